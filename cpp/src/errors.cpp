#include "tomofuse/errors.hpp"

namespace tomofuse {

Error::Error(const std::string& what) : std::runtime_error(what) {}
Error::Error(const char* what) : std::runtime_error(what) {}
Error::~Error() = default;

InvalidArgument::InvalidArgument(const std::string& what) : std::invalid_argument(what) {}
InvalidArgument::InvalidArgument(const char* what) : std::invalid_argument(what) {}
InvalidArgument::~InvalidArgument() = default;

ShapeError::ShapeError(const std::string& what) : InvalidArgument(what) {}
ShapeError::ShapeError(const char* what) : InvalidArgument(what) {}
ShapeError::~ShapeError() = default;

DTypeError::DTypeError(const std::string& what) : InvalidArgument(what) {}
DTypeError::DTypeError(const char* what) : InvalidArgument(what) {}
DTypeError::~DTypeError() = default;

}  // namespace tomofuse
