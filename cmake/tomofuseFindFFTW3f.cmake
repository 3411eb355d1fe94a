# tomofuse_find_fftw3f()
#
# Provides the imported target FFTW3::fftw3f (single-precision FFTW).
#
# Looked for, in order:
#   1. where the user says: FFTW3f_DIR (a directory with FFTW3fConfig.cmake) or
#      FFTW3F_ROOT (a prefix with include/fftw3.h and lib/libfftw3f.*);
#   2. pylib-fftw3f from PyPI (the build requirement of pip builds), located by
#      importing `pylib_fftw3f` with the build interpreter (Python_EXECUTABLE) and
#      searched there alone. Other packages ship FFTW CMake packages too: the wheel
#      of finufft (in the test extra, and formerly a dependency) installs lib64/cmake/fftw3f into
#      site-packages, which scikit-build-core puts on CMAKE_PREFIX_PATH ahead of
#      everything else, so a general search picked finufft's FFTW on every reinstall
#      into an environment that already had tomofuse;
#   3. any other FFTW3f CMake package on CMAKE_PREFIX_PATH / the system;
#   4. a plain fftw3.h + libfftw3f (e.g. Debian's libfftw3-dev), preferring the
#      static archive.
# The configure output says which one is used and where it came from.
# A static archive must be position independent because it ends up inside the
# shared libtomofuse_core; this is checked once at configure time.
include(tomofuseRootHint)

function(tomofuse_find_fftw3f)
  if(TARGET FFTW3::fftw3f)
    return()
  endif()

  set(_how "")
  if(FFTW3f_DIR OR DEFINED ENV{FFTW3f_DIR})
    find_package(FFTW3f CONFIG QUIET)
    if(TARGET FFTW3::fftw3f)
      set(_how "the CMake package given by FFTW3f_DIR (${FFTW3f_DIR})")
    endif()
  endif()

  if(NOT TARGET FFTW3::fftw3f AND NOT FFTW3F_ROOT AND NOT DEFINED ENV{FFTW3F_ROOT} AND Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c "import os, pylib_fftw3f; print(os.path.dirname(os.path.abspath(pylib_fftw3f.__file__)))"
      OUTPUT_VARIABLE _pylib_dir
      OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _pylib_rc
      ERROR_QUIET)
    if(_pylib_rc EQUAL 0 AND IS_DIRECTORY "${_pylib_dir}")
      find_package(FFTW3f CONFIG QUIET NO_DEFAULT_PATH
        PATHS "${_pylib_dir}/lib64/cmake/fftw3f" "${_pylib_dir}/lib/cmake/fftw3f" "${_pylib_dir}")
      if(TARGET FFTW3::fftw3f)
        set(_how "pylib-fftw3f (${FFTW3f_DIR})")
      else()
        message(WARNING "tomofuse: pylib_fftw3f imports from ${_pylib_dir} but has no FFTW3fConfig.cmake; "
                        "looking for FFTW elsewhere")
      endif()
    endif()
  endif()

  if(NOT TARGET FFTW3::fftw3f AND NOT FFTW3F_ROOT AND NOT DEFINED ENV{FFTW3F_ROOT})
    find_package(FFTW3f CONFIG QUIET)
    if(TARGET FFTW3::fftw3f)
      set(_how "the CMake package in ${FFTW3f_DIR} (not pylib-fftw3f: the build interpreter cannot import it)")
    endif()
  endif()

  if(NOT TARGET FFTW3::fftw3f)
    # FFTW3F_ROOT is searched alone: scikit-build-core puts site-packages first on
    # CMAKE_PREFIX_PATH, where finufft's wheel leaves include/fftw3.h and lib64/libfftw3f.a.
    tomofuse_root_hint(_root FFTW3F_ROOT)
    if(_root)
      set(_where PATHS "${_root}" NO_DEFAULT_PATH)
    else()
      set(_where "")
    endif()
    find_path(TOMOFUSE_FFTW3F_INCLUDE_DIR fftw3.h ${_where} PATH_SUFFIXES include)
    find_library(TOMOFUSE_FFTW3F_LIBRARY
      NAMES libfftw3f.a fftw3f ${_where}
      PATH_SUFFIXES lib lib64 "lib/${CMAKE_LIBRARY_ARCHITECTURE}")
    if(TOMOFUSE_FFTW3F_INCLUDE_DIR AND TOMOFUSE_FFTW3F_LIBRARY)
      add_library(FFTW3::fftw3f UNKNOWN IMPORTED GLOBAL)
      set_target_properties(FFTW3::fftw3f PROPERTIES
        IMPORTED_LOCATION "${TOMOFUSE_FFTW3F_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${TOMOFUSE_FFTW3F_INCLUDE_DIR}")
      if(UNIX)
        set_property(TARGET FFTW3::fftw3f APPEND PROPERTY INTERFACE_LINK_LIBRARIES m)
      endif()
      set(_how "a plain library (${TOMOFUSE_FFTW3F_LIBRARY}, headers in ${TOMOFUSE_FFTW3F_INCLUDE_DIR})")
    endif()
  endif()

  if(NOT TARGET FFTW3::fftw3f)
    message(FATAL_ERROR
      "tomofuse: single-precision FFTW (fftw3f) was not found.\n"
      "  pip builds take it from PyPI (pylib-fftw3f in [build-system].requires);\n"
      "  for a plain CMake build either `pip install pylib-fftw3f` into the Python that\n"
      "  CMake finds, install libfftw3-dev, or pass -DFFTW3f_DIR=<dir with FFTW3fConfig.cmake>\n"
      "  or -DFFTW3F_ROOT=<prefix with include/fftw3.h and lib/libfftw3f.*>.")
  endif()

  # Where did we get it from?
  get_target_property(_loc FFTW3::fftw3f LOCATION)
  get_target_property(_inc FFTW3::fftw3f INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT _inc)
    set(_inc "")
  endif()
  message(STATUS "tomofuse: FFTW3f from ${_how}")
  message(STATUS "tomofuse: FFTW3f library: ${_loc}")

  if(_loc MATCHES "\\.a$")
    # Prove that the archive can be linked into a shared object (it must be -fPIC).
    if(NOT DEFINED CACHE{TOMOFUSE_FFTW3F_PIC_OK} OR NOT "${TOMOFUSE_FFTW3F_PIC_CHECKED}" STREQUAL "${_loc}")
      try_compile(_pic_ok
        "${CMAKE_BINARY_DIR}/CMakeFiles/tomofuse_fftw_pic_check"
        "${PROJECT_SOURCE_DIR}/cmake/checks/fftw_pic"
        tomofuse_fftw_pic_check
        CMAKE_FLAGS
          "-DFFTW_LIBRARY=${_loc}"
          "-DFFTW_INCLUDE_DIR=${_inc}"
          "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
        OUTPUT_VARIABLE _pic_out)
      set(TOMOFUSE_FFTW3F_PIC_OK ${_pic_ok} CACHE INTERNAL "FFTW3f archive links into a shared library")
      set(TOMOFUSE_FFTW3F_PIC_CHECKED "${_loc}" CACHE INTERNAL "")
      if(NOT _pic_ok)
        message(FATAL_ERROR
          "tomofuse: ${_loc} cannot be linked into a shared library (not built with -fPIC?).\n"
          "Use pylib-fftw3f from PyPI or rebuild FFTW with --enable-float --with-pic.\n"
          "Linker output:\n${_pic_out}")
      endif()
    endif()
    message(STATUS "tomofuse: FFTW3f static archive is position independent: yes")
  endif()
endfunction()
