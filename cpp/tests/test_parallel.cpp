// tomofuse::resolve_threads / default_threads: the documented thread-count contract.
#include "test_util.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

TEST(Parallel, ThreadCountsFollowTheContract) {
    EXPECT_THROW(tomofuse::resolve_threads(-1), tomofuse::InvalidArgument);
    EXPECT_THROW(tomofuse::set_default_threads(-1), tomofuse::InvalidArgument);
    EXPECT_GE(tomofuse::default_threads(), 1);
    if (tomofuse::openmp_enabled()) {
        EXPECT_EQ(tomofuse::resolve_threads(3), 3);
        tomofuse::set_default_threads(2);
        EXPECT_EQ(tomofuse::default_threads(), 2);
        EXPECT_EQ(tomofuse::resolve_threads(0), 2);
        tomofuse::set_default_threads(0);
    } else {
        EXPECT_EQ(tomofuse::resolve_threads(3), 1);
    }
}
