#include "tomofuse/version.hpp"

namespace tomofuse {

const char* library_version() noexcept { return TOMOFUSE_VERSION_STRING; }

}  // namespace tomofuse
