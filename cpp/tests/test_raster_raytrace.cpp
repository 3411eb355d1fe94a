// tomofuse::raster and tomofuse::raytrace against brute force and hand-counted cases.
#include <cmath>
#include <cstdint>
#include <vector>

#include "test_util.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/raster.hpp"
#include "tomofuse/raytrace.hpp"

namespace {

template <typename Real>
void check_points_in_spheres() {
    const std::size_t n = 2000, m = 60;
    const auto pts = tomofuse::test::cast<Real>(tomofuse::test::random_reals(3 * n, 71, 0.0, 10.0));
    const auto cen = tomofuse::test::cast<Real>(tomofuse::test::random_reals(3 * m, 72, 0.0, 10.0));
    const auto rad = tomofuse::test::cast<Real>(tomofuse::test::random_reals(m, 73, 0.2, 1.5));
    std::vector<std::uint8_t> in1(n), in2(n), ref(n, 0);
    tomofuse::raster::points_in_spheres<Real>(pts.data(), n, cen.data(), rad.data(), m, in1.data(), 1);
    tomofuse::raster::points_in_spheres<Real>(pts.data(), n, cen.data(), rad.data(), m, in2.data(), 3);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < m; ++j) {
            Real d2 = 0;
            for (int a = 0; a < 3; ++a) {
                const Real d = pts[3 * i + a] - cen[3 * j + a];
                d2 += d * d;
            }
            if (d2 <= rad[j] * rad[j]) {
                ref[i] = 1;
            }
        }
    }
    EXPECT_EQ(in1, ref);
    EXPECT_EQ(in2, ref);
}

TEST(Raster, PointsInSpheresMatchBruteForce) {
    check_points_in_spheres<float>();
    check_points_in_spheres<double>();
    std::vector<double> p(3), c(3), r{-1.0};
    std::vector<std::uint8_t> out(1);
    EXPECT_THROW(tomofuse::raster::points_in_spheres<double>(p.data(), 1, c.data(), r.data(), 1, out.data()),
                 tomofuse::InvalidArgument);
}

TEST(Raytrace, ARayThroughSeiReportsItsLength) {
    // One row of 10 voxels: particle 1 (x 0-2), SEI (x 3-4), CBD (x 5), pore after.
    const tomofuse::raytrace::Shape3 shape{1, 1, 10};
    std::vector<std::uint8_t> labels{2, 2, 2, 4, 4, 3, 0, 0, 0, 0};
    std::vector<std::int32_t> particles{1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    const double origin[3] = {0.5, 0.5, 2.9}, dir[3] = {0.0, 0.0, 1.0};
    const std::int32_t self = 1;
    tomofuse::raytrace::RayHits hits;
    tomofuse::raytrace::trace_rays(labels.data(), particles.data(), shape, origin, dir, &self, 1, 100.0, 4, 0.0,
                                   hits, 1);
    EXPECT_EQ(hits.label[0], 4);
    EXPECT_EQ(hits.particle[0], 0);
    EXPECT_NEAR(hits.sei_length[0], 2.0, 1e-12);
    // Backwards the ray leaves the grid: no hit.
    const double back[3] = {0.0, 0.0, -1.0};
    tomofuse::raytrace::trace_rays(labels.data(), particles.data(), shape, origin, back, &self, 1, 100.0, 4, 0.0,
                                   hits, 1);
    EXPECT_EQ(hits.label[0], tomofuse::raytrace::kNoHit);
    EXPECT_TRUE(std::isnan(hits.sei_length[0]));
}

TEST(Raytrace, ASingleVoxelParticleHasSixUnitFaces) {
    const tomofuse::raytrace::Shape3 shape{5, 5, 5};
    std::vector<std::int32_t> particles(125, 0);
    particles[(2 * 5 + 2) * 5 + 2] = 7;
    const auto s = tomofuse::raytrace::surface_elements(particles.data(), shape, 0.7, 2);
    ASSERT_EQ(s.size(), 6u);
    double area = 0.0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        EXPECT_EQ(s.particle[i], 7);
        area += s.area[i];
        const int axis = std::abs(s.axis[i]) - 1;  // 0 z, 1 y, 2 x
        EXPECT_NEAR(s.normal[3 * i + static_cast<std::size_t>(axis)], s.axis[i] > 0 ? 1.0 : -1.0, 1e-12);
        EXPECT_NEAR(s.center[3 * i + static_cast<std::size_t>(axis)], s.axis[i] > 0 ? 3.0 : 2.0, 1e-12);
    }
    EXPECT_NEAR(area, 6.0, 1e-12);
}

}  // namespace
