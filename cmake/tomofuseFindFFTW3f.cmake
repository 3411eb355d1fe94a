# tomofuse_find_fftw3f()
#
# Provides the imported target FFTW3::fftw3f (single-precision FFTW).
#
# Looked for, in order:
#   1. an FFTW3f CMake package (pylib-fftw3f from PyPI, or a from-source FFTW
#      install) via CMAKE_PREFIX_PATH / FFTW3f_DIR;
#   2. a plain fftw3.h + libfftw3f (e.g. Debian's libfftw3-dev), preferring the
#      static archive, hinted by FFTW3F_ROOT.
# A static archive must be position independent because it ends up inside the
# shared libtomofuse_core; this is checked once at configure time.
function(tomofuse_find_fftw3f)
  if(TARGET FFTW3::fftw3f)
    return()
  endif()

  find_package(FFTW3f CONFIG QUIET)

  if(NOT TARGET FFTW3::fftw3f)
    find_path(TOMOFUSE_FFTW3F_INCLUDE_DIR fftw3.h
      HINTS ${FFTW3F_ROOT} ENV FFTW3F_ROOT PATH_SUFFIXES include)
    find_library(TOMOFUSE_FFTW3F_LIBRARY
      NAMES libfftw3f.a fftw3f
      HINTS ${FFTW3F_ROOT} ENV FFTW3F_ROOT PATH_SUFFIXES lib lib64)
    if(TOMOFUSE_FFTW3F_INCLUDE_DIR AND TOMOFUSE_FFTW3F_LIBRARY)
      add_library(FFTW3::fftw3f UNKNOWN IMPORTED GLOBAL)
      set_target_properties(FFTW3::fftw3f PROPERTIES
        IMPORTED_LOCATION "${TOMOFUSE_FFTW3F_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${TOMOFUSE_FFTW3F_INCLUDE_DIR}")
      if(UNIX)
        set_property(TARGET FFTW3::fftw3f APPEND PROPERTY INTERFACE_LINK_LIBRARIES m)
      endif()
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
