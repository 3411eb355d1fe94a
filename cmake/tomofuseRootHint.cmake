# tomofuse_root_hint(<out> <name>)
#
# The installation prefix a user gave for a dependency: the CMake variable <name>
# if set, else the environment variable <name>, else "" (e.g. MKLROOT, FFTW3F_ROOT).
function(tomofuse_root_hint out name)
  if(${name})
    set(${out} "${${name}}" PARENT_SCOPE)
  elseif(DEFINED ENV{${name}})
    set(${out} "$ENV{${name}}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
  endif()
endfunction()
