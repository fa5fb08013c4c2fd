# Injected with -DCMAKE_PROJECT_INCLUDE=<this file> when building an interface package
# against the ROS 2 PyPI wheels (scripts/build_msgs.sh, scripts/check_colcon.sh).
#
# Why: the wheels' exported `<pkg>__rosidl_generator_py` targets hard-code the wheel
# builder's Python and numpy include directories
# (/opt/python/cp311-cp311/include/python3.11, ...), which do not exist here, so CMake's
# generate step fails with "Imported target ... includes non-existent path".
# Fix: at the end of the top-level project - after rosidl_generate_interfaces() has
# imported those targets - point every such target whose include directories are
# missing at this interpreter's and numpy's include directories. Targets whose
# directories exist (a regular ROS 2 install) are left alone.

include_guard(GLOBAL)

function(_fleet_coord_collect_imported_targets dir out_var)
  get_directory_property(_targets DIRECTORY "${dir}" IMPORTED_TARGETS)
  get_directory_property(_subdirs DIRECTORY "${dir}" SUBDIRECTORIES)
  foreach(_sub IN LISTS _subdirs)
    _fleet_coord_collect_imported_targets("${_sub}" _sub_targets)
    list(APPEND _targets ${_sub_targets})
  endforeach()
  set(${out_var} "${_targets}" PARENT_SCOPE)
endfunction()

function(_fleet_coord_fix_rosidl_py_include)
  _fleet_coord_collect_imported_targets("${CMAKE_SOURCE_DIR}" _targets)
  set(_broken "")
  foreach(_t IN LISTS _targets)
    if(NOT _t MATCHES "__rosidl_generator_py$")
      continue()
    endif()
    get_target_property(_dirs "${_t}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    foreach(_d IN LISTS _dirs)
      if(NOT EXISTS "${_d}")
        list(APPEND _broken "${_t}")
        break()
      endif()
    endforeach()
  endforeach()
  if(NOT _broken)
    return()
  endif()
  # Python3_EXECUTABLE (passed by the caller) selects the venv's interpreter.
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
  set(_good ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
  list(LENGTH _broken _n)
  message(STATUS "fix_rosidl_py_include: ${_n} imported *__rosidl_generator_py target(s) "
                 "pointed at missing include dirs; using ${_good}")
  foreach(_t IN LISTS _broken)
    set_target_properties("${_t}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_good}")
  endforeach()
endfunction()

# CMAKE_PROJECT_INCLUDE runs after every project() call; defer only once, at the top.
get_property(_fleet_coord_fix_deferred GLOBAL PROPERTY FLEET_COORD_FIX_ROSIDL_PY_DEFERRED)
if(NOT _fleet_coord_fix_deferred)
  set_property(GLOBAL PROPERTY FLEET_COORD_FIX_ROSIDL_PY_DEFERRED TRUE)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}"
                 CALL _fleet_coord_fix_rosidl_py_include)
endif()
