# Injected with -DCMAKE_PROJECT_INCLUDE=<this file> by scripts/setup_env.sh when the
# interface packages are built against the ROS 2 PyPI wheels installed in the venv.
#
# Why: the wheels were built in a manylinux container, and their exported CMake
# targets <pkg>::<pkg>__rosidl_generator_py name that container's interpreter in
# INTERFACE_INCLUDE_DIRECTORIES:
#   /opt/python/cp311-cp311/include/python3.11
#   /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
# Those paths don't exist here, and CMake refuses to generate with an imported
# target that names a non-existent include directory.
#
# Fix (no root, no edits of installed files): at the end of the top-level
# CMakeLists.txt (cmake_language(DEFER)), every imported target of the project is
# visited and each such path is replaced by the one of the interpreter the build
# uses (Python3_EXECUTABLE, i.e. the venv's python); other non-existent paths under
# /opt/python are dropped.
cmake_minimum_required(VERSION 3.19)  # cmake_language(DEFER)

function(_irstd_fix_wheel_include_dirs)
  if(Python3_EXECUTABLE)
    set(_py "${Python3_EXECUTABLE}")
  else()
    find_program(_py NAMES python3 python REQUIRED)
  endif()
  execute_process(
    COMMAND "${_py}" -c "import sysconfig; print(sysconfig.get_paths()['include'])"
    OUTPUT_VARIABLE _py_inc OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(
    COMMAND "${_py}" -c "import numpy; print(numpy.get_include())"
    OUTPUT_VARIABLE _np_inc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)

  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_fixed 0)
  foreach(_t IN LISTS _targets)
    get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs OR NOT _dirs MATCHES "/opt/python/")
      continue()
    endif()
    set(_new "")
    foreach(_d IN LISTS _dirs)
      if(EXISTS "${_d}" OR NOT _d MATCHES "^/opt/python/")
        list(APPEND _new "${_d}")
      elseif(_d MATCHES "/numpy/(_core/)?include$")
        if(_np_inc AND EXISTS "${_np_inc}")
          list(APPEND _new "${_np_inc}")
        endif()
      elseif(_d MATCHES "/include/python[0-9.]+$")
        if(_py_inc AND EXISTS "${_py_inc}")
          list(APPEND _new "${_py_inc}")
        endif()
      endif()
    endforeach()
    list(REMOVE_DUPLICATES _new)
    set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
    math(EXPR _fixed "${_fixed} + 1")
  endforeach()
  message(STATUS "irstd_ros: rewrote /opt/python include dirs of ${_fixed} imported targets")
endfunction()

get_property(_irstd_fix_deferred GLOBAL PROPERTY _IRSTD_FIX_WHEEL_PATHS_DEFERRED)
if(NOT _irstd_fix_deferred)
  set_property(GLOBAL PROPERTY _IRSTD_FIX_WHEEL_PATHS_DEFERRED TRUE)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _irstd_fix_wheel_include_dirs)
endif()
