"""Tools over the whole stack: the demo, the benchmarks, the load test and the GPU session
(``irstd demo``, ``irstd bench``, ``irstd load-test``; ``python -m irstd_ros.tools.<name>``)."""
