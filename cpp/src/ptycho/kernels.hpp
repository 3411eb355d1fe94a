// Private to the ptychography engines: the per-row and per-pixel kernels, compiled as
// instruction-set clones (isa.hpp). Every sum has a fixed order, so results do not
// depend on the clone or the thread that runs it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tomofuse/ptycho.hpp"

namespace tomofuse::ptycho::detail {

// One row of the bilinear window: rows a (weight 1 - fy) and b (weight fy; null when fy == 0).
void interp_row(const cfloat* a, const cfloat* b, float fy, float fx, std::size_t n, cfloat* o);

// The position refinement's derivatives (position_equations), numpy.gradient's differences:
// g = (b - a) * c over n values, and g = d row / dx along a row of n >= 2 values (central,
// one-sided at its two ends).
void difference(const cfloat* a, const cfloat* b, float c, std::size_t n, cfloat* g);
void gradient_row(const cfloat* row, std::size_t n, cfloat* g);

// One mode's terms of the position refinement's normal equations over a row of n pixels, added to
// (first: stored in) float rows: with r = e - p o, syy += |gy|^2, syx += Re(conj(gy) gx), sxx += |gx|^2,
// ty += conj(gy) r, tx += conj(gx) r (gy, gx the probe's derivatives: the shifted-probe model).
void position_terms_probe(const cfloat* gy, const cfloat* gx, const cfloat* p, const cfloat* e, const cfloat* o,
                          std::size_t n, bool first, float* syy, float* syx, float* sxx, cfloat* ty, cfloat* tx);

// One mode's terms for the bilinear model, added to (first: stored in) float rows: pw += |p|^2,
// t += conj(p) (e - p o).
void position_terms_object(const cfloat* p, const cfloat* e, const cfloat* o, std::size_t n, bool first, float* pw,
                           cfloat* t);

// A row's sums of the normal equations (position_equations) added to acc = (a11, a12, a22, b1, b2), in
// double over 8 interleaved partial sums (pixel j in sum j % 8, combined in order; the same bits in
// every clone): shifted probes, from the window row o and the rows of position_terms_probe --
// |o|^2 syy, |o|^2 syx, |o|^2 sxx, -Re(conj(o) ty), -Re(conj(o) tx); the bilinear model, from the
// window's derivative rows gy, gx and position_terms_object's pw, t -- |gy|^2 pw, Re(conj(gy) gx) pw,
// |gx|^2 pw, Re(conj(gy) t), Re(conj(gx) t).
void position_sums_probe(const cfloat* o, const float* syy, const float* syx, const float* sxx, const cfloat* ty,
                         const cfloat* tx, std::size_t n, double* acc);
void position_sums_object(const cfloat* gy, const cfloat* gx, const float* pw, const cfloat* t, std::size_t n,
                          double* acc);

// Bilinear interpolation of the object under window w into out (N x N).
void interpolate(const Scan& s, const cfloat* object, const Window& w, cfloat* out);

// f = p o, or f = 2 p o - e, or f = a b + c d (the line search's first-order exit wave).
void product(const cfloat* p, const cfloat* o, cfloat* f, std::size_t nn);
void product_sum(const cfloat* a, const cfloat* b, const cfloat* c, const cfloat* d, cfloat* f, std::size_t nn);
void reflect(const cfloat* p, const cfloat* o, const cfloat* e, cfloat* f, std::size_t nn);

// pw = |f|^2 (first mode) or pw += |f|^2.
void power(const cfloat* f, float* pw, std::size_t nn, bool first);

// mag = sqrt(pw) * inv_scale.
void magnitude(const float* pw, float inv_scale, float* mag, std::size_t nn);

// Relaxed modulus factor: valid pixels move from mag to amp + keep (mag - amp), all
// scaled by inv_nn (the unscaled forward + backward pair); invalid pixels keep mag.
void modulus_factor(const float* mag, const float* amp, const std::uint8_t* mask, float keep, float inv_nn,
                    float* factor, std::size_t nn);

// f *= factor.
void scale_by(cfloat* f, const float* factor, std::size_t nn);

// e += f - p o.
void dm_update(cfloat* e, const cfloat* f, const cfloat* p, const cfloat* o, std::size_t nn);

// Sum over valid pixels of (mag - amp)^2 (double): 8 interleaved partial sums (pixel q
// goes to lane q % 8) added in lane order, a fixed order that vectorizes.
double amplitude_error(const float* mag, const float* amp, const std::uint8_t* mask, std::size_t nn);

// g = sum_m conj(P_m) w_m over one window row.
void conj_product(const cfloat* p, std::size_t p_stride, const cfloat* w, std::size_t w_stride, std::size_t modes,
                  std::size_t n, cfloat* g);

// The two window rows that meet one object row, interpolated vertically
// (v = a g1 + b g0, a = 1 - fy, b = fy) and spread horizontally:
// num[j] += (1 - fx) v[j], then num[j + 1] += fx v[j]; den likewise with the probe
// power rows. An absent tap has null power row (and g row); with num null only den
// is spread (the illumination).
void spread_rows(cfloat* num, float* den, const cfloat* g1, const cfloat* g0, const float* pw1, const float* pw0,
                 float a, float b, float fx, std::size_t n, cfloat* v, float* pv);

// den += |o|^2, num_m += conj(o) w_m over one window row.
void gather_probe_row(const cfloat* o, const cfloat* w, std::size_t w_stride, std::size_t modes, cfloat* num,
                      std::size_t num_stride, float* den, std::size_t n);

// ML: per pixel weight (1 - I / Im) scaled by the unscaled transform pair; 0 at invalid pixels.
void ml_weights(const float* pw, const float* data, const std::uint8_t* mask, float inv_n2, float floor,
                float* weight, std::size_t nn);

// chi = weight * far.
void weighted(const cfloat* far, const float* weight, cfloat* chi, std::size_t nn);

// Poisson deviance sum over valid pixels of Im - I - I log(Im / I) (Im for I = 0), double,
// 8 interleaved partial sums added in lane order.
double poisson_deviance(const float* pw, const float* data, const std::uint8_t* mask, float inv_n2, float floor,
                        std::size_t nn);

// Line search, per pixel over modes: im += |f0|^2, a1 += 2 Re(conj(f0) f1),
// a2 += |f1|^2 + 2 Re(conj(f0) f2) (first mode: assign). f2 null: a2 += |f1|^2 only (the cross
// term then comes from real space, cross_sum).
void line_accumulate(const cfloat* f0, const cfloat* f1, const cfloat* f2, float* im, float* a1, float* a2,
                     std::size_t nn, bool first);

// sum_q Re(conj(chi_q) hp_q d_q) (double, 8 interleaved partial sums): by Parseval, with chi the
// back-propagated weighted far field B(w F(P o)), the sum over pixels of w Re(conj(F(P o)) F(hp d)).
double cross_sum(const cfloat* chi, const cfloat* hp, const cfloat* d, std::size_t nn);

// (B1, B2) contributions of one pattern: sum over valid pixels of l' a1 and
// l' a2 + l'' a1^2 / 2, l' = 1 - I / Im, l'' = I / Im^2 (all scaled by inv_n2), double,
// 8 interleaved partial sums.
void line_sums(const float* im, const float* a1, const float* a2, const float* data, const std::uint8_t* mask,
               double inv_n2, double floor, std::size_t nn, double* b1, double* b2);

}  // namespace tomofuse::ptycho::detail
