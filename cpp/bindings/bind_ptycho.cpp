// tomofuse._core.PtychoScan: the ptychography engines. Arguments are checked
// with the GIL held (dtype, shape, contiguity, writeability, no aliasing of
// outputs); the computation runs with the GIL released. Values of the data
// (finite, non-negative) are checked once per reconstruction in Python
// (tomofuse.ptycho.reconstruct), not on every iteration.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/ptycho.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

namespace {

using ptycho::cfloat;
using ptycho::Scan;

struct Frames {
    std::vector<std::size_t> object;
    std::vector<std::size_t> probe;
    std::vector<std::size_t> waves;
    std::vector<std::size_t> data;
    std::vector<std::size_t> mask;
};

Frames shapes(const Scan& s) {
    return {{s.height(), s.width()},
            {s.modes(), s.n(), s.n()},
            {s.size(), s.modes(), s.n(), s.n()},
            {s.size(), s.n(), s.n()},
            {s.n(), s.n()}};
}

// object_gather / probe_gather: (num, den) from the fixed factor and the waves.
template <typename Fn>
py::tuple gather(const Scan& s, const py::object& fixed, const char* fixed_name, std::vector<std::size_t> fixed_shape,
                 const py::object& waves, std::vector<std::size_t> num_shape, std::vector<std::size_t> den_shape,
                 int threads, Fn fn) {
    auto f = require_shape<std::complex<float>>(fixed, fixed_name, std::move(fixed_shape), false);
    auto w = require_shape<std::complex<float>>(waves, "waves", shapes(s).waves, false);
    check_threads(threads);
    py::array_t<std::complex<float>> num(num_shape);
    py::array_t<float> den(den_shape);
    auto* np_ = num.mutable_data();
    auto* dp = den.mutable_data();
    {
        py::gil_scoped_release release;
        fn(s, f.data(), w.data(), np_, dp, threads);
    }
    return py::make_tuple(num, den);
}

// The checked options of the ML engine (defaults as ptycho::MLOptions).
ptycho::MLOptions ml_options(float intensity_floor, bool update_object = true, bool update_probe = true,
                             float precond_regularization = 1e-2f, int max_backtracks = 10, double smoothness = 0.0) {
    ptycho::MLOptions opt;
    opt.update_object = update_object;
    opt.update_probe = update_probe;
    opt.intensity_floor = require_positive(intensity_floor, "intensity_floor");
    opt.precond_regularization = require_positive(precond_regularization, "precond_regularization");
    if (max_backtracks < 0) {
        throw InvalidArgument("max_backtracks must be >= 0, got " + std::to_string(max_backtracks));
    }
    opt.max_backtracks = max_backtracks;
    opt.smoothness = require_nonnegative(smoothness, "smoothness");
    return opt;
}

// Bytes of ml_iteration's shifted probes (MLBuffers::shifted: two halves of bins x modes frames), and of
// its whole workspace: those, then their key (none for the bilinear model).
std::size_t ml_shifted_bytes(const Scan& s) {
    return s.subpixel_steps() == 0 ? 0 : 2 * s.bins() * s.modes() * s.frame() * sizeof(std::complex<float>);
}
std::size_t ml_workspace_bytes(const Scan& s) {
    return s.subpixel_steps() == 0 ? 0 : ml_shifted_bytes(s) + ptycho::ml_shifted_key_bytes(s);
}

// The (K, 5) output of the position equations, after checking that the frame has the two pixels per axis
// that their differences need.
py::array_t<double> position_equations_out(const Scan& s, const char* name) {
    if (s.n() < 2) {
        throw py::value_error(std::string(name) + " needs frames of at least 2 x 2 pixels, got " +
                              std::to_string(s.n()));
    }
    return py::array_t<double>({s.size(), std::size_t{5}});
}

ptycho::Data data_arg(const Scan& s, const py::object& values, const py::object& mask, const char* name,
                      py::array_t<float>& keep_values, py::array_t<std::uint8_t>& keep_mask) {
    const Frames sh = shapes(s);
    keep_values = require_shape<float>(values, name, sh.data, false);
    ptycho::Data d;
    d.values = keep_values.data();
    if (!mask.is_none()) {
        keep_mask = require_shape<std::uint8_t>(mask, "mask", sh.mask, false);
        d.mask = keep_mask.data();
    }
    return d;
}

}  // namespace

void bind_ptycho(py::module_& m) {
    py::class_<Scan>(m, "PtychoScan", R"doc(
Geometry of a far-field ptychographic scan and the engines that act on it.

Scan point k sees the object through an N x N window whose top-left corner is
at object pixel (y0 + fy, x0 + fx): y0 = floor(y) + height // 2 - n // 2 and
fy = y - floor(y) for a probe-center position (y, x) in object pixels relative
to the object's center. Two sub-pixel models: with subpixel_steps = B > 0
(tomofuse.ptycho.reconstruct uses 8) the window is the whole-pixel crop and
the probe is shifted instead, P(r - f), by a Fourier phase ramp of the
fraction rounded to 1/B pixel (exact for a band-limited probe that vanishes at
its edges, as tomofuse.acquire.ptycho_scan models it); with subpixel_steps = 0
(this class's default, kept for compatibility) the object under the window is
interpolated bilinearly. Model intensities are sum_m |F(P_km o_k)|^2 with the
unitary DFT and zero frequency at index 0 (undo the detector's fftshift first).

All arrays are C-contiguous: object (height, width) complex64, probe
(modes, n, n) complex64, exit waves and ML buffers (K, modes, n, n) complex64,
data (K, n, n) float32, mask (n, n) uint8 (nonzero = valid) or None. Results do
not depend on the number of threads.

Parameters
----------
n : int
    Pattern side, pixels.
modes : int
    Number of probe modes.
object_shape : (int, int)
    (height, width) of the object array.
positions : (K, 2) ndarray of float64
    Probe-center positions (y, x), object pixels relative to the object's center.
subpixel_steps : int
    1..64: shifted probes, fractions rounded to 1/steps (8 in
    tomofuse.ptycho.reconstruct); 0 (default here): bilinear object.

Raises
------
ValueError
    If a window falls outside the object (naming the position), the scan is
    empty or a size is zero.
)doc")
        .def(py::init([](std::size_t n, std::size_t modes, std::pair<std::size_t, std::size_t> object_shape,
                         const py::object& positions_obj, int subpixel_steps) {
                 auto pos = require_array<double>(positions_obj, "positions", 2);
                 if (pos.shape(1) != 2) {
                     throw ShapeError("positions must have shape (K, 2) of (y, x), got " + shape_str(pos));
                 }
                 const auto k = static_cast<std::size_t>(pos.shape(0));
                 // the FFT planner's two frames, and the object the engines will be given
                 require_memory("PtychoScan", sizeof(cfloat), {n, n}, 2);
                 require_memory("PtychoScan", sizeof(cfloat), {object_shape.first, object_shape.second});
                 return std::make_unique<Scan>(n, modes, object_shape.first, object_shape.second, pos.data(), k,
                                               subpixel_steps);
             }),
             py::arg("n"), py::arg("modes"), py::arg("object_shape"), py::arg("positions"), py::kw_only(),
             py::arg("subpixel_steps") = 0)
        .def_property_readonly("subpixel_steps", &Scan::subpixel_steps)
        .def_property_readonly(
            "bins",
            [](const Scan& s) {
                py::array_t<std::int64_t> b(static_cast<py::ssize_t>(s.size()));
                auto* p = b.mutable_data();
                for (std::size_t k = 0; k < s.size(); ++k) {
                    p[k] = s.bin(k);
                }
                return b;
            },
            "(K,) int64 probe-shift bin of each pattern (all 0 for the bilinear model).")
        .def_property_readonly(
            "bin_shifts",
            [](const Scan& s) {
                py::array_t<float> b({static_cast<py::ssize_t>(s.bins()), py::ssize_t{2}});
                auto v = b.mutable_unchecked<2>();
                for (std::size_t i = 0; i < s.bins(); ++i) {
                    v(static_cast<py::ssize_t>(i), 0) = s.bin_shift(i).first;
                    v(static_cast<py::ssize_t>(i), 1) = s.bin_shift(i).second;
                }
                return b;
            },
            "(bins, 2) float32 (fy, fx) probe shift of each bin, pixels.")
        .def(
            "shifted_probes",
            [](const Scan& s, const py::object& probe, int threads) {
                const Frames sh = shapes(s);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, false);
                check_threads(threads);
                require_memory("shifted_probes", sizeof(cfloat), {s.bins(), s.modes(), s.n(), s.n()});
                py::array_t<std::complex<float>> out({s.bins(), s.modes(), s.n(), s.n()});
                auto* op = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ptycho::shifted_probes(s, p.data(), op, threads);
                }
                return out;
            },
            py::arg("probe"), py::kw_only(), py::arg("threads") = 0,
            "(bins, modes, n, n): the probe each bin sees, P(r - f_b) (the probe itself for the bilinear model).")
        .def_property_readonly("dm_workspace_bytes", &ptycho::dm_workspace_bytes,
                               "Bytes of dm_iteration's optional workspace for this scan.")
        .def_property_readonly("ml_workspace_bytes", &ml_workspace_bytes,
                               "Bytes of ml_iteration's optional workspace for this scan.")
        .def_property_readonly("n", &Scan::n)
        .def_property_readonly("modes", &Scan::modes)
        .def_property_readonly("object_shape", [](const Scan& s) { return py::make_tuple(s.height(), s.width()); })
        .def("__len__", &Scan::size)
        .def_property_readonly(
            "windows",
            [](const Scan& s) {
                py::array_t<std::int64_t> origin({static_cast<py::ssize_t>(s.size()), py::ssize_t{2}});
                py::array_t<float> frac({static_cast<py::ssize_t>(s.size()), py::ssize_t{2}});
                auto o = origin.mutable_unchecked<2>();
                auto f = frac.mutable_unchecked<2>();
                for (std::size_t k = 0; k < s.size(); ++k) {
                    const auto& w = s.windows()[k];
                    const auto kk = static_cast<py::ssize_t>(k);
                    o(kk, 0) = w.y0;
                    o(kk, 1) = w.x0;
                    f(kk, 0) = w.fy;
                    f(kk, 1) = w.fx;
                }
                return py::make_tuple(origin, frac);
            },
            "(origin, fraction): (K, 2) int64 window corners (y0, x0) and (K, 2) float32 fractions (fy, fx).")
        .def(
            "object_windows",
            [](const Scan& s, const py::object& object, int threads) {
                auto o = require_shape<std::complex<float>>(object, "object", shapes(s).object, false);
                check_threads(threads);
                require_memory("object_windows", sizeof(cfloat), {s.size(), s.n(), s.n()});
                py::array_t<std::complex<float>> out({s.size(), s.n(), s.n()});
                auto* op = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ptycho::object_windows(s, o.data(), op, threads);
                }
                return out;
            },
            py::arg("object"), py::kw_only(), py::arg("threads") = 0,
            "(K, n, n) complex64: the object under each window as the model sees it (bilinear or whole-pixel crop).")
        .def(
            "position_equations",
            [](const Scan& s, const py::object& object, const py::object& probe, const py::object& exit,
               const py::object& workspace, int threads) {
                const Frames sh = shapes(s);
                auto o = require_shape<std::complex<float>>(object, "object", sh.object, false);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, false);
                auto e = require_shape<std::complex<float>>(exit, "exit", sh.waves, false);
                py::array_t<std::uint8_t> ws;
                if (!workspace.is_none()) {
                    ws = require_shape<std::uint8_t>(workspace, "workspace", {ptycho::dm_workspace_bytes(s)}, false);
                }
                check_threads(threads);
                py::array_t<double> out = position_equations_out(s, "position_equations");
                auto* op = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ptycho::position_equations(s, o.data(), p.data(), e.data(), op, threads,
                                               workspace.is_none() ? nullptr : ws.data());
                }
                return out;
            },
            py::arg("object"), py::arg("probe"), py::arg("exit"), py::kw_only(), py::arg("workspace") = py::none(),
            py::arg("threads") = 0,
            "(K, 5) float64 (a11, a12, a22, b1, b2): each pattern's normal equations of a linearized position "
            "step -- inner products over modes and pixels of the exit wave's derivatives in the position "
            "(-grad(P_km) o_k for shifted probes, P_m grad(o_k) for the bilinear model; numpy.gradient's "
            "differences) with each other and with the residual exit_km - P_km o_k (real parts). Sums over pixels "
            "in double, in a fixed order: the same at any thread count. ``workspace``: a dm_iteration workspace "
            "of this scan as the last dm_iteration left it, whose shifted probes are read when its key says they "
            "are this probe's (the same bits), else they are computed.")
        .def(
            "position_equations_modulus",
            [](const Scan& s, const py::object& intensities, const py::object& mask, const py::object& object,
               const py::object& probe, int threads) {
                const Frames sh = shapes(s);
                py::array_t<float> keep;
                py::array_t<std::uint8_t> keep_mask;
                const ptycho::Data d = data_arg(s, intensities, mask, "intensities", keep, keep_mask);
                auto o = require_shape<std::complex<float>>(object, "object", sh.object, false);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, false);
                check_threads(threads);
                py::array_t<double> out = position_equations_out(s, "position_equations_modulus");
                auto* op = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ptycho::position_equations_modulus(s, d, o.data(), p.data(), op, threads);
                }
                return out;
            },
            py::arg("intensities"), py::arg("mask"), py::arg("object"), py::arg("probe"), py::kw_only(),
            py::arg("threads") = 0,
            "(K, 5) float64 (a11, a12, a22, b1, b2): each pattern's Gauss-Newton normal equations of its position "
            "from the measured intensities (K, N, N) float32 (zero frequency at index 0; ``mask`` (N, N) uint8, "
            "nonzero = valid, or None): sums over valid pixels of J_i J_j and J_i r, r = sqrt(I) - A the residual "
            "of the model's unitary far-field amplitude A = sqrt(sum_m |F(P_km o_k)|^2) and J_i = dA / dx_i = "
            "sum_m Re(conj(F(P_km o_k)) F(P_km d_i o_k)) / A (numpy.gradient's differences of the window). Sums "
            "in double in pixel order: the same at any thread count.")
        .def(
            "exit_waves",
            [](const Scan& s, const py::object& object, const py::object& probe, const py::object& out, int threads) {
                const Frames sh = shapes(s);
                auto o = require_shape<std::complex<float>>(object, "object", sh.object, false);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, false);
                auto e = require_shape<std::complex<float>>(out, "out", sh.waves, true);
                check_no_alias({span("out", e)}, {span("object", o), span("probe", p), span("out", e)});
                check_threads(threads);
                py::gil_scoped_release release;
                ptycho::exit_waves(s, o.data(), p.data(), e.mutable_data(), threads);
            },
            py::arg("object"), py::arg("probe"), py::arg("out"), py::kw_only(), py::arg("threads") = 0,
            "out[k, m] = P_km * o_k: the probe mode as pattern k sees it (shifted by its fraction, or itself for "
            "the bilinear model) times the object under window k.")
        .def(
            "dm_iteration",
            [](const Scan& s, const py::object& amplitudes, const py::object& mask, const py::object& object,
               const py::object& probe, const py::object& exit, bool update_object, bool update_probe,
               int overlap_iterations, float object_inertia, float probe_inertia, const py::object& bound,
               bool model_error, const py::object& workspace, bool reuse_workspace, int threads) {
                const Frames sh = shapes(s);
                py::array_t<float> keep;
                py::array_t<std::uint8_t> keep_mask;
                const ptycho::Data d = data_arg(s, amplitudes, mask, "amplitudes", keep, keep_mask);
                auto o = require_shape<std::complex<float>>(object, "object", sh.object, true);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, true);
                auto e = require_shape<std::complex<float>>(exit, "exit", sh.waves, true);
                py::array_t<double> keep_bound;
                if (!bound.is_none()) {
                    keep_bound = require_shape<double>(bound, "bound", {s.size()}, false);
                }
                py::array_t<std::uint8_t> ws;
                if (!workspace.is_none()) {
                    ws = require_shape<std::uint8_t>(workspace, "workspace", {ptycho::dm_workspace_bytes(s)}, true);
                }
                std::vector<Span> outs{span("object", o), span("probe", p), span("exit", e), span("workspace", ws)};
                std::vector<Span> inputs = outs;
                inputs.push_back(span("amplitudes", keep));
                if (!mask.is_none()) {
                    inputs.push_back(span("mask", keep_mask));
                }
                if (!bound.is_none()) {
                    inputs.push_back(span("bound", keep_bound));
                }
                check_no_alias(outs, inputs);
                if (overlap_iterations < 1) {
                    throw InvalidArgument("overlap_iterations must be >= 1, got " + std::to_string(overlap_iterations));
                }
                if (!(object_inertia >= 0.0f) || !(probe_inertia >= 0.0f)) {
                    throw InvalidArgument("object_inertia and probe_inertia must be >= 0");
                }
                check_threads(threads);
                ptycho::DMOptions opt;
                opt.update_object = update_object;
                opt.update_probe = update_probe;
                opt.overlap_iterations = overlap_iterations;
                opt.object_inertia = object_inertia;
                opt.probe_inertia = probe_inertia;
                opt.bound = bound.is_none() ? nullptr : keep_bound.data();
                opt.reuse_workspace = reuse_workspace && !workspace.is_none();
                py::array_t<double> err(static_cast<py::ssize_t>(s.size()));
                double* ep = err.mutable_data();
                py::array_t<double> merr(static_cast<py::ssize_t>(model_error ? s.size() : 0));
                double* mp = model_error ? merr.mutable_data() : nullptr;
                {
                    py::gil_scoped_release release;
                    ptycho::dm_iteration(s, d, o.mutable_data(), p.mutable_data(), e.mutable_data(), opt, ep, mp,
                                         threads, workspace.is_none() ? nullptr : ws.mutable_data());
                }
                if (model_error) {
                    return py::object(py::make_tuple(err, merr));
                }
                return py::object(err);
            },
            py::arg("amplitudes"), py::arg("mask"), py::arg("object"), py::arg("probe"), py::arg("exit"),
            py::kw_only(), py::arg("update_object") = true, py::arg("update_probe") = true,
            py::arg("overlap_iterations") = 1, py::arg("object_inertia") = 1e-3f, py::arg("probe_inertia") = 1e-3f,
            py::arg("bound") = py::none(), py::arg("model_error") = false, py::arg("workspace") = py::none(),
            py::arg("reuse_workspace") = false, py::arg("threads") = 0,
            R"doc(One difference-map iteration in place on object, probe and exit.

First the overlap projection (object then probe, `overlap_iterations` times,
each a damped weighted least-squares update), then
exit <- exit + F^-1 M F(2 P o_k - exit) - P o_k with the measured amplitudes
(sqrt of intensities, unitary normalization), relaxed by the optional (K,)
float64 `bound`: a pattern whose squared amplitude error e exceeds b moves to
A + sqrt(b / e) (|Psi| - A), one with e <= b is left alone. With
model_error=True returns (error, model_error), the latter the same sum for the
model P o_k after the overlap projection (one more FFT per pattern). `workspace`:
optional uint8 scratch of `dm_workspace_bytes` bytes (any contents) that the
iteration uses instead of allocating its own; keep one for a run's iterations.
`reuse_workspace=True` says the workspace is the previous call's, unmodified
since: the shifted probes it holds are reused when they were computed from the
same probe and shifts (checked bit for bit; the same result either way).
Returns the (K,) float64 sum of squared amplitude errors per pattern, before the
modulus constraint.)doc")
        .def(
            "object_gather",
            [](const Scan& s, const py::object& probe, const py::object& waves, int threads) {
                const Frames sh = shapes(s);
                return gather(s, probe, "probe", sh.probe, waves, {sh.object[0], sh.object[1]},
                              {sh.object[0], sh.object[1]}, threads, ptycho::object_gather);
            },
            py::arg("probe"), py::arg("waves"), py::kw_only(), py::arg("threads") = 0,
            "(num, den): sum_k S_k^T sum_m conj(P_km) waves[k, m] and sum_k S_k^T sum_m |P_km|^2, (height, width).")
        .def(
            "illumination",
            [](const Scan& s, const py::object& probe, int threads) {
                const Frames sh = shapes(s);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, false);
                check_threads(threads);
                py::array_t<float> den({sh.object[0], sh.object[1]});
                auto* dp = den.mutable_data();
                {
                    py::gil_scoped_release release;
                    ptycho::illumination(s, p.data(), dp, threads);
                }
                return den;
            },
            py::arg("probe"), py::kw_only(), py::arg("threads") = 0,
            "(height, width) float32 sum_k S_k^T sum_m |P_km|^2, the probe power summed over the scan "
            "(object_gather's den without the waves).")
        .def(
            "probe_gather",
            [](const Scan& s, const py::object& object, const py::object& waves, int threads) {
                const Frames sh = shapes(s);
                return gather(s, object, "object", sh.object, waves, {sh.probe[0], sh.probe[1], sh.probe[2]},
                              {sh.mask[0], sh.mask[1]}, threads, ptycho::probe_gather);
            },
            py::arg("object"), py::arg("waves"), py::kw_only(), py::arg("threads") = 0,
            "(num, den): sum_k conj(o_k) waves[k, m], (modes, n, n), and sum_k |o_k|^2, (n, n).")
        .def(
            "ml_gradient",
            [](const Scan& s, const py::object& intensities, const py::object& mask, const py::object& object,
               const py::object& probe, const py::object& far, const py::object& chi, float intensity_floor,
               int threads) {
                const Frames sh = shapes(s);
                py::array_t<float> keep;
                py::array_t<std::uint8_t> keep_mask;
                const ptycho::Data d = data_arg(s, intensities, mask, "intensities", keep, keep_mask);
                auto o = require_shape<std::complex<float>>(object, "object", sh.object, false);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, false);
                auto f = require_shape<std::complex<float>>(far, "far", sh.waves, true);
                auto c = require_shape<std::complex<float>>(chi, "chi", sh.waves, true);
                std::vector<Span> inputs{span("object", o), span("probe", p), span("far", f), span("chi", c),
                                         span("intensities", keep)};
                if (!mask.is_none()) {
                    inputs.push_back(span("mask", keep_mask));
                }
                check_no_alias({span("far", f), span("chi", c)}, inputs);
                const ptycho::MLOptions opt = ml_options(intensity_floor);
                check_threads(threads);
                py::array_t<std::complex<float>> go({sh.object[0], sh.object[1]});
                py::array_t<std::complex<float>> gp({sh.probe[0], sh.probe[1], sh.probe[2]});
                py::array_t<float> po({sh.object[0], sh.object[1]});
                py::array_t<float> pp({sh.mask[0], sh.mask[1]});
                py::array_t<double> nll(static_cast<py::ssize_t>(s.size()));
                ptycho::MLBuffers b{f.mutable_data(), c.mutable_data()};
                auto* gop = go.mutable_data();
                auto* gpp = gp.mutable_data();
                auto* pop = po.mutable_data();
                auto* ppp = pp.mutable_data();
                auto* nlp = nll.mutable_data();
                {
                    py::gil_scoped_release release;
                    ptycho::ml_gradient(s, d, o.data(), p.data(), b, opt, gop, gpp, pop, ppp, nlp, threads);
                }
                return py::make_tuple(nll, go, gp, po, pp);
            },
            py::arg("intensities"), py::arg("mask"), py::arg("object"), py::arg("probe"), py::arg("far"),
            py::arg("chi"), py::kw_only(), py::arg("intensity_floor") = 1e-6f, py::arg("threads") = 0,
            R"doc((nll, grad_object, grad_probe, precond_object, precond_probe) at (object, probe).

nll (K,) float64 is the Poisson deviance per pattern, sum over valid pixels of
Im - I - I log(Im / I) with Im the model intensity plus intensity_floor; the
gradients are the Wirtinger derivatives with respect to conj(object) and
conj(probe). Fills far (F(P_km o_k), unscaled DFT) and chi (F^-1 of the
residual, unitary) as work buffers.)doc")
        .def(
            "ml_line_coefficients",
            [](const Scan& s, const py::object& intensities, const py::object& mask, const py::object& object,
               const py::object& probe, const py::object& h_object, const py::object& h_probe, const py::object& far,
               const py::object& chi, float intensity_floor, int threads) {
                const Frames sh = shapes(s);
                py::array_t<float> keep;
                py::array_t<std::uint8_t> keep_mask;
                const ptycho::Data d = data_arg(s, intensities, mask, "intensities", keep, keep_mask);
                auto o = require_shape<std::complex<float>>(object, "object", sh.object, false);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, false);
                auto ho = require_shape<std::complex<float>>(h_object, "h_object", sh.object, false);
                auto hp = require_shape<std::complex<float>>(h_probe, "h_probe", sh.probe, false);
                auto f = require_shape<std::complex<float>>(far, "far", sh.waves, false);
                py::array_t<std::complex<float>> c;
                if (!chi.is_none()) {
                    c = require_shape<std::complex<float>>(chi, "chi", sh.waves, false);
                }
                const ptycho::MLOptions opt = ml_options(intensity_floor);
                check_threads(threads);
                double b1 = 0.0;
                double b2 = 0.0;
                {
                    py::gil_scoped_release release;
                    ptycho::ml_line_coefficients(s, d, o.data(), p.data(), ho.data(), hp.data(), f.data(), opt, &b1, &b2,
                                                 threads, nullptr, chi.is_none() ? nullptr : c.data());
                }
                return py::make_tuple(b1, b2);
            },
            py::arg("intensities"), py::arg("mask"), py::arg("object"), py::arg("probe"), py::arg("h_object"),
            py::arg("h_probe"), py::arg("far"), py::kw_only(), py::arg("chi") = py::none(),
            py::arg("intensity_floor") = 1e-6f, py::arg("threads") = 0,
            "(B1, B2) of L(x + a h) ~ L(x) + B1 a + B2 a^2, far holding F(P_km o_k) at x (from ml_gradient). "
            "With chi (the back-propagated residuals of the same ml_gradient call) the cross term of B2 is "
            "computed in real space (Parseval): one transform per pattern and mode fewer, equal up to rounding.")
        .def(
            "ml_iteration",
            [](const Scan& s, const py::object& intensities, const py::object& mask, const py::object& object,
               const py::object& probe, const py::object& state, const py::object& far, const py::object& chi,
               bool start, bool update_object, bool update_probe, float intensity_floor, float precond_regularization,
               int max_backtracks, double smoothness, const py::object& workspace, bool reuse_workspace,
               int threads) {
                const Frames sh = shapes(s);
                py::array_t<float> keep;
                py::array_t<std::uint8_t> keep_mask;
                const ptycho::Data d = data_arg(s, intensities, mask, "intensities", keep, keep_mask);
                auto o = require_shape<std::complex<float>>(object, "object", sh.object, true);
                auto p = require_shape<std::complex<float>>(probe, "probe", sh.probe, true);
                auto f = require_shape<std::complex<float>>(far, "far", sh.waves, true);
                auto c = require_shape<std::complex<float>>(chi, "chi", sh.waves, true);
                py::array_t<std::uint8_t> ws;
                if (!workspace.is_none()) {
                    ws = require_shape<std::uint8_t>(workspace, "workspace", {ml_workspace_bytes(s)}, true);
                }
                auto go = require_shape<std::complex<float>>(state.attr("grad_object"), "state.grad_object", sh.object, true);
                auto gp = require_shape<std::complex<float>>(state.attr("grad_probe"), "state.grad_probe", sh.probe, true);
                auto po = require_shape<float>(state.attr("precond_object"), "state.precond_object", sh.object, true);
                auto pp = require_shape<float>(state.attr("precond_probe"), "state.precond_probe", sh.mask, true);
                auto dobj = require_shape<std::complex<float>>(state.attr("dir_object"), "state.dir_object", sh.object, true);
                auto dpr = require_shape<std::complex<float>>(state.attr("dir_probe"), "state.dir_probe", sh.probe, true);
                auto qo = require_shape<std::complex<float>>(state.attr("prev_grad_object"), "state.prev_grad_object", sh.object,
                                                   true);
                auto qp = require_shape<std::complex<float>>(state.attr("prev_grad_probe"), "state.prev_grad_probe", sh.probe,
                                                   true);
                const std::vector<Span> outs{span("object", o),
                                             span("probe", p),
                                             span("far", f),
                                             span("chi", c),
                                             span("workspace", ws),
                                             span("state.grad_object", go),
                                             span("state.grad_probe", gp),
                                             span("state.precond_object", po),
                                             span("state.precond_probe", pp),
                                             span("state.dir_object", dobj),
                                             span("state.dir_probe", dpr),
                                             span("state.prev_grad_object", qo),
                                             span("state.prev_grad_probe", qp)};
                std::vector<Span> all = outs;
                all.push_back(span("intensities", keep));
                if (!mask.is_none()) {
                    all.push_back(span("mask", keep_mask));
                }
                check_no_alias(outs, all);
                const ptycho::MLOptions opt = ml_options(intensity_floor, update_object, update_probe,
                                                         precond_regularization, max_backtracks, smoothness);
                check_threads(threads);
                ptycho::MLState st;
                st.grad_object = go.mutable_data();
                st.grad_probe = gp.mutable_data();
                st.precond_object = po.mutable_data();
                st.precond_probe = pp.mutable_data();
                st.dir_object = dobj.mutable_data();
                st.dir_probe = dpr.mutable_data();
                st.prev_grad_object = qo.mutable_data();
                st.prev_grad_probe = qp.mutable_data();
                st.prev_zg = state.attr("prev_zg").cast<double>();
                st.nll = state.attr("nll").cast<double>();
                st.alpha = state.attr("alpha").cast<double>();
                ptycho::MLBuffers b{f.mutable_data(), c.mutable_data()};
                if (!workspace.is_none() && s.subpixel_steps() > 0) {
                    // the shifted probes, then their key (ml_workspace_bytes)
                    b.shifted = reinterpret_cast<std::complex<float>*>(ws.mutable_data());
                    b.shifted_key = ws.mutable_data() + ml_shifted_bytes(s);
                    if (!reuse_workspace) {  // not the previous call's: nothing in it is read
                        std::fill(b.shifted_key, b.shifted_key + ptycho::ml_shifted_key_bytes(s), 0);
                    }
                }
                ptycho::MLStep step;
                auto* op = o.mutable_data();
                auto* prp = p.mutable_data();
                {
                    py::gil_scoped_release release;
                    if (start) {
                        ptycho::ml_start(s, d, op, prp, st, b, opt, threads);
                        step.nll = st.nll;
                    } else {
                        step = ptycho::ml_iteration(s, d, op, prp, st, b, opt, threads);
                    }
                }
                state.attr("prev_zg") = st.prev_zg;
                state.attr("nll") = st.nll;
                state.attr("alpha") = st.alpha;
                return py::make_tuple(step.nll, step.alpha, step.backtracks, step.restarted);
            },
            py::arg("intensities"), py::arg("mask"), py::arg("object"), py::arg("probe"), py::arg("state"),
            py::arg("far"), py::arg("chi"), py::kw_only(), py::arg("start") = false, py::arg("update_object") = true,
            py::arg("update_probe") = true, py::arg("intensity_floor") = 1e-6f,
            py::arg("precond_regularization") = 1e-2f, py::arg("max_backtracks") = 10, py::arg("smoothness") = 0.0,
            py::arg("workspace") = py::none(), py::arg("reuse_workspace") = false, py::arg("threads") = 0,
            R"doc(One maximum-likelihood iteration in place (or, with start=True, only the gradient at the start point).

`state` is an object with array attributes grad_object, grad_probe,
precond_object (float32, object shape), precond_probe (float32, (n, n)),
dir_object, dir_probe, prev_grad_object, prev_grad_probe and float attributes
prev_zg, nll, alpha, which are updated. The step is a preconditioned
Polak-Ribiere (PR+) conjugate-gradient direction with the polynomial line
search of Thibault & Guizar-Sicairos (2012), halved until the objective does
not increase. The objective is the Poisson NLL plus, with smoothness > 0, the
prior smoothness * sum over neighboring object pixels |O_i - O_j|^2.
`workspace`: optional uint8 scratch of `ml_workspace_bytes` bytes (any
contents) for the shifted probes, kept by the caller from iteration to
iteration so that no call allocates them; `reuse_workspace=True` says it is
the previous call's, unmodified since: the line search then reads the shifted
probes of the point the previous call ended at when its key says they are the
probe's (the same bits; results are identical without a workspace).
Returns (objective, alpha, backtracks, restarted).)doc");
}

}  // namespace tomofuse::bindings
