// Exceptions thrown by the tomofuse core.
//
// Every class has a key function defined in the library, so its type
// information lives in libtomofuse_core only and `catch` works across shared
// objects (the Python extension, a consumer program).
#pragma once

#include <stdexcept>
#include <string>

#include "tomofuse/export.hpp"

namespace tomofuse {

/// A failure that is not the caller's fault (resource, internal or library error).
class TOMOFUSE_EXPORT Error : public std::runtime_error {
public:
    explicit Error(const std::string& what);
    explicit Error(const char* what);
    ~Error() override;
};

/// The caller passed a bad argument (value, pointer or combination).
class TOMOFUSE_EXPORT InvalidArgument : public std::invalid_argument {
public:
    explicit InvalidArgument(const std::string& what);
    explicit InvalidArgument(const char* what);
    ~InvalidArgument() override;
};

/// An array argument has the wrong shape, size or memory layout.
class TOMOFUSE_EXPORT ShapeError : public InvalidArgument {
public:
    explicit ShapeError(const std::string& what);
    explicit ShapeError(const char* what);
    ~ShapeError() override;
};

/// An array argument has the wrong element type.
class TOMOFUSE_EXPORT DTypeError : public InvalidArgument {
public:
    explicit DTypeError(const std::string& what);
    explicit DTypeError(const char* what);
    ~DTypeError() override;
};

}  // namespace tomofuse
