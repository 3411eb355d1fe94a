# tomofuse_find_mkl_fft(<found_var>)
#
# Looks for Intel oneMKL's FFT with its FFTW3 interface as static archives, and
# on success provides the imported target tomofuse::mkl_fft and sets
# <found_var> to TRUE.
#
# Linked: libmkl_intel_lp64.a (C interface, 32-bit integers; the FFTW3 wrappers
# live here), libmkl_sequential.a (MKL never starts threads of its own: the
# core runs its OpenMP loops over frames and calls one transform per thread)
# and libmkl_core.a, as one link group. Only the objects the FFT needs are
# pulled in (about 23 MB, every CPU code path of MKL's FFT).
#
# Looked for, in order:
#   1. MKLROOT (CMake variable or environment): <MKLROOT>/lib[/intel64] and
#      <MKLROOT>/include/fftw;
#   2. the PyPI distributions mkl-static and mkl-include (the build
#      requirements of pip builds on x86-64 Linux), located through
#      importlib.metadata of the build interpreter (Python_EXECUTABLE). pip's
#      isolated build environment installs them under a temporary prefix that
#      only their file records know.
include(tomofuseRootHint)

function(tomofuse_find_mkl_fft found_var)
  set(${found_var} FALSE PARENT_SCOPE)
  if(TARGET tomofuse::mkl_fft)
    set(${found_var} TRUE PARENT_SCOPE)
    return()
  endif()

  tomofuse_root_hint(_root MKLROOT)

  set(_libdir "")
  set(_incdir "")
  set(_how "")
  if(_root)
    find_path(_libdir_found libmkl_core.a PATHS "${_root}/lib/intel64" "${_root}/lib" NO_DEFAULT_PATH)
    find_path(_incdir_found fftw3.h PATHS "${_root}/include/fftw" NO_DEFAULT_PATH)
    if(_libdir_found AND _incdir_found)
      set(_libdir "${_libdir_found}")
      set(_incdir "${_incdir_found}")
      set(_how "MKLROOT (${_root})")
    endif()
    unset(_libdir_found CACHE)
    unset(_incdir_found CACHE)
  elseif(Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c [=[
import importlib.metadata as md, os
def where(dist, name):
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return ""
    for f in d.files or []:
        if f.name == name and (name != "fftw3.h" or f.parent.name == "fftw"):
            return os.path.dirname(os.path.realpath(d.locate_file(f)))
    return ""
lib = where("mkl-static", "libmkl_core.a")
inc = where("mkl-include", "fftw3.h")
print(f"{lib};{inc};{md.version('mkl-static')}" if lib and inc else ";;")
]=]
      OUTPUT_VARIABLE _out
      OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _rc
      ERROR_QUIET)
    if(_rc EQUAL 0)
      list(LENGTH _out _n)
      if(_n EQUAL 3)
        list(GET _out 0 _l)
        list(GET _out 1 _i)
        list(GET _out 2 _v)
        if(_l AND _i)
          set(_libdir "${_l}")
          set(_incdir "${_i}")
          set(_how "the PyPI distributions mkl-static ${_v} and mkl-include")
        endif()
      endif()
    endif()
  endif()
  if(NOT _libdir)
    return()
  endif()

  foreach(_name IN ITEMS mkl_intel_lp64 mkl_sequential mkl_core)
    if(NOT EXISTS "${_libdir}/lib${_name}.a")
      message(STATUS "tomofuse: MKL at ${_libdir} lacks lib${_name}.a; not using it")
      return()
    endif()
  endforeach()
  get_filename_component(_mkl_include "${_incdir}" DIRECTORY)

  find_package(Threads REQUIRED)
  add_library(tomofuse::mkl_fft INTERFACE IMPORTED GLOBAL)
  # fftw3.h of MKL's FFTW3 interface first, then mkl.h (version query).
  set_target_properties(tomofuse::mkl_fft PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_incdir};${_mkl_include}"
    INTERFACE_COMPILE_DEFINITIONS "TOMOFUSE_FFT_MKL=1"
    INTERFACE_LINK_LIBRARIES
      "-Wl,--start-group;${_libdir}/libmkl_intel_lp64.a;${_libdir}/libmkl_sequential.a;${_libdir}/libmkl_core.a;-Wl,--end-group;Threads::Threads;m;${CMAKE_DL_LIBS}")
  set(TOMOFUSE_MKL_LICENSING_DIR "" CACHE INTERNAL "")
  get_filename_component(_prefix "${_libdir}" DIRECTORY)
  if(IS_DIRECTORY "${_prefix}/share/doc/mkl/licensing")
    set(TOMOFUSE_MKL_LICENSING_DIR "${_prefix}/share/doc/mkl/licensing" CACHE INTERNAL "")
  endif()
  message(STATUS "tomofuse: FFT from Intel oneMKL (FFTW3 interface, sequential), from ${_how}")
  message(STATUS "tomofuse: MKL libraries in ${_libdir}, fftw3.h in ${_incdir}")
  set(${found_var} TRUE PARENT_SCOPE)
endfunction()
