"""``cpu_identity``: what a recorded speed holds for."""

from __future__ import annotations

from irstd_ros.inference import resources

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9B14

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: not the first processor
"""


def test_identity_names_vendor_family_model_and_the_usable_cores(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    monkeypatch.setattr(resources, "CPUINFO", path)
    monkeypatch.setattr(resources, "available_cores", lambda: 2)
    assert resources.cpu_identity() == "AuthenticAMD family 25 model 17 (AMD EPYC 9B14), 2 cores"
    monkeypatch.setattr(resources, "available_cores", lambda: 4)  # the same CPU, another affinity
    assert resources.cpu_identity().endswith("(AMD EPYC 9B14), 4 cores")


def test_identity_without_cpuinfo_falls_back_to_the_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(resources.platform, "processor", lambda: "arm")
    monkeypatch.setattr(resources, "available_cores", lambda: 8)
    assert resources.cpu_identity() == "arm, 8 cores"
