// tomofuse._core.gaussian_blur / upsample_linear / icm / icm_energy / shell_moves: argument checks with the GIL
// held, the kernels with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/segment.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

namespace {

segment::Shape shape_of(const py::array& a) {
    return {static_cast<std::size_t>(a.shape(0)), static_cast<std::size_t>(a.shape(1)),
            static_cast<std::size_t>(a.shape(2))};
}

std::vector<std::size_t> dims(const segment::Shape& s) { return {s.nz, s.ny, s.nx}; }

void read_sigma(const py::object& obj, double sigma[3]) {
    py::sequence seq;
    try {
        seq = obj.cast<py::sequence>();
    } catch (const py::cast_error&) {
        throw DTypeError("sigma must be a sequence of 3 numbers (voxels along z, y, x), got " + type_name(obj));
    }
    if (py::len(seq) != 3) {
        throw ShapeError("sigma must have 3 entries (z, y, x), got " + std::to_string(py::len(seq)));
    }
    for (std::size_t a = 0; a < 3; ++a) {
        try {
            sigma[a] = seq[a].cast<double>();
        } catch (const py::cast_error&) {
            throw DTypeError("sigma must hold numbers, got " + type_name(seq[a]));
        }
        require_nonnegative(sigma[a], "sigma");
    }
}

struct Model {
    py::array_t<float> data;
    py::array_t<float> levels;
    segment::Shape shape;
    py::array_t<std::uint8_t> pairs;
    py::array_t<float> unary;
    int n_pairs = 0;
};

// labels, the output, must not share memory with the model's arrays, itself or the other inputs.
void check_labels_alias(const Model& md, const Span& labels, std::vector<Span> inputs) {
    inputs.insert(inputs.begin(), {labels, span("data", md.data), span("levels", md.levels)});
    if (md.n_pairs) {
        inputs.push_back(span("pairs", md.pairs));
        inputs.push_back(span("unary", md.unary));
    }
    check_no_alias({labels}, inputs);
}

Model read_model(const py::object& data_obj, const py::object& levels_obj, const py::object& pairs_obj,
                 const py::object& unary_obj) {
    Model m;
    m.data = require_array<float>(data_obj, "data", 3);
    m.shape = shape_of(m.data);
    m.levels = require_array<float>(levels_obj, "levels", 1);
    if (m.levels.shape(0) < 1 || m.levels.shape(0) > 8) {
        throw ShapeError("levels must hold 1 to 8 labels, got shape " + shape_str(m.levels));
    }
    if (pairs_obj.is_none() != unary_obj.is_none()) {
        throw InvalidArgument("pairs and unary must be given together");
    }
    if (!pairs_obj.is_none()) {
        m.pairs = require_array<std::uint8_t>(pairs_obj, "pairs", 2);
        if (m.pairs.shape(1) != 2) {
            throw ShapeError("pairs must have shape (n_pairs, 2), got " + shape_str(m.pairs));
        }
        m.n_pairs = static_cast<int>(m.pairs.shape(0));
        m.unary = require_shape<float>(unary_obj, "unary",
                                       {static_cast<std::size_t>(m.n_pairs), m.shape.nz, m.shape.ny, m.shape.nx},
                                       false);
    }
    return m;
}

// Three integers in [lo, hi] (a shape or an origin).
std::vector<std::int64_t> read_triple(const py::object& obj, const char* name, std::int64_t lo, std::int64_t hi) {
    std::vector<std::int64_t> v;
    const std::string what = std::string(name) + " must be three integers (z, y, x)";
    try {
        for (const auto& item : py::iter(obj)) {
            if (py::isinstance<py::bool_>(item) || !py::hasattr(item, "__index__")) {  // ints, NumPy's included
                throw py::cast_error();
            }
            v.push_back(py::reinterpret_borrow<py::object>(item).attr("__index__")().cast<std::int64_t>());
        }
    } catch (const py::error_already_set&) {
        throw py::type_error(what);
    } catch (const py::cast_error&) {
        throw py::type_error(what);
    }
    if (v.size() != 3) {
        throw InvalidArgument(what + ", got " + std::to_string(v.size()));
    }
    for (auto x : v) {
        if (x < lo || x > hi) {
            throw InvalidArgument(std::string(name) + " must hold integers in [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "], got " + std::to_string(x));
        }
    }
    return v;
}

segment::IcmOptions read_options(double data_weight, double smoothness, int max_sweeps, std::int64_t min_changes,
                                 int cell, const py::object& origin) {
    segment::IcmOptions o;
    o.data_weight = require_positive(data_weight, "data_weight");
    o.smoothness = require_nonnegative(smoothness, "smoothness");
    if (max_sweeps < 0) {
        throw InvalidArgument("max_sweeps must be >= 0, got " + std::to_string(max_sweeps));
    }
    if (min_changes < 0) {
        throw InvalidArgument("min_changes must be >= 0, got " + std::to_string(min_changes));
    }
    if (cell < 0) {
        throw InvalidArgument("cell must be >= 0 (0 = automatic), got " + std::to_string(cell));
    }
    const auto org = read_triple(origin, "origin", 0, std::int64_t{1} << 40);
    for (int a = 0; a < 3; ++a) {
        o.origin[a] = static_cast<std::ptrdiff_t>(org[static_cast<std::size_t>(a)]);
    }
    o.max_sweeps = max_sweeps;
    o.min_changes = static_cast<std::size_t>(min_changes);
    o.cell = cell;
    return o;
}

}  // namespace

void bind_segment(py::module_& m) {
    m.def(
        "gaussian_blur",
        [](const py::object& volume, const py::object& sigma_obj, bool adjoint, int threads) {
            auto in = require_array<float>(volume, "volume", 3);
            double sigma[3];
            read_sigma(sigma_obj, sigma);
            check_threads(threads);
            const auto s = shape_of(in);
            py::array_t<float> out({in.shape(0), in.shape(1), in.shape(2)});
            const float* src = in.data();
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                segment::gaussian_blur(src, dst, s, sigma, adjoint, threads);
            }
            return out;
        },
        py::arg("volume"), py::arg("sigma"), py::kw_only(), py::arg("adjoint") = false, py::arg("threads") = 0,
        "Separable sampled Gaussian blur H (or its adjoint H^T) with replicated edges.\n\n"
        "volume : (z, y, x) float32, C-contiguous; sigma : (3,) voxels along z, y, x (0 = none).\n"
        "Returns a new float32 array. Identical for any thread count.");

    m.def(
        "upsample_linear",
        [](const py::object& coarse_obj, int factor, const py::object& shape_obj, const py::object& origin_obj,
           const py::object& out_obj, int threads) {
            auto in = require_array<float>(coarse_obj, "coarse", 3);
            if (in.shape(0) < 1 || in.shape(1) < 1 || in.shape(2) < 1) {
                throw ShapeError("coarse must not be empty, got shape " + shape_str(in));
            }
            if (factor < 1) {
                throw InvalidArgument("factor must be >= 1, got " + std::to_string(factor));
            }
            const auto fine = read_triple(shape_obj, "shape", 1, std::int64_t{1} << 40);
            const auto org = read_triple(origin_obj, "origin", 0, std::int64_t{1} << 40);
            check_threads(threads);
            const segment::Shape fs{static_cast<std::size_t>(fine[0]), static_cast<std::size_t>(fine[1]),
                                    static_cast<std::size_t>(fine[2])};
            py::array_t<float> out;
            if (out_obj.is_none()) {
                out = py::array_t<float>({fine[0], fine[1], fine[2]});
            } else {
                out = require_shape<float>(out_obj, "out", dims(fs), true);
                check_no_alias({span("out", out)}, {span("out", out), span("coarse", in)});
            }
            const std::ptrdiff_t o[3] = {static_cast<std::ptrdiff_t>(org[0]), static_cast<std::ptrdiff_t>(org[1]),
                                         static_cast<std::ptrdiff_t>(org[2])};
            const float* src = in.data();
            float* dst = out.mutable_data();
            const auto cs = shape_of(in);
            {
                py::gil_scoped_release release;
                segment::upsample_linear(src, cs, dst, fs, factor, o, threads);
            }
            return out;
        },
        py::arg("coarse"), py::arg("factor"), py::arg("shape"), py::kw_only(),
        py::arg("origin") = py::make_tuple(0, 0, 0), py::arg("out") = py::none(), py::arg("threads") = 0,
        "Linear interpolation of a field of factor-cube means onto the fine grid of `shape` (z, y, x),\n"
        "fine voxel i at coarse coordinate (i + origin % factor + 0.5) / factor - 0.5 along each axis,\n"
        "end values beyond the first and last coarse centers; float32, axes z, y, x in turn.\n\n"
        "coarse : (z, y, x) float32; out : float32 of `shape`, writeable, or None for a new array.\n"
        "Returns the fine field. Identical for any thread count.");

    m.def(
        "icm",
        [](const py::object& data_obj, const py::object& labels_obj, const py::object& levels_obj,
           const py::object& sigma_obj, const py::object& allowed_obj, const py::object& pairs_obj,
           const py::object& unary_obj, double data_weight, double smoothness, int max_sweeps,
           std::int64_t min_changes, int cell, const py::object& origin, int threads) {
            Model md = read_model(data_obj, levels_obj, pairs_obj, unary_obj);
            auto labels = require_shape<std::uint8_t>(labels_obj, "labels", dims(md.shape), true);
            // (a default-constructed py::array is an empty array, not a null handle)
            const bool has_allowed = !allowed_obj.is_none();
            py::array_t<std::uint8_t> allowed;
            if (has_allowed) {
                allowed = require_shape<std::uint8_t>(allowed_obj, "allowed", dims(md.shape), false);
            }
            double sigma[3];
            read_sigma(sigma_obj, sigma);
            const auto opt = read_options(data_weight, smoothness, max_sweeps, min_changes, cell, origin);
            check_threads(threads);
            check_labels_alias(md, span("labels", labels),
                               has_allowed ? std::vector<Span>{span("allowed", allowed)} : std::vector<Span>{});
            const float* d = md.data.data();
            std::uint8_t* l = labels.mutable_data();
            const float* lv = md.levels.data();
            const auto K = static_cast<int>(md.levels.shape(0));
            const std::uint8_t* al = has_allowed ? allowed.data() : nullptr;
            const std::uint8_t* pr = md.n_pairs ? md.pairs.data() : nullptr;
            const float* un = md.n_pairs ? md.unary.data() : nullptr;
            segment::IcmReport rep;
            {
                py::gil_scoped_release release;
                rep = segment::icm(d, l, md.shape, lv, K, sigma, al, pr, md.n_pairs, un, opt, threads);
            }
            py::dict out;
            out["sweeps"] = rep.sweeps;
            py::list changes;
            for (auto c : rep.changes) changes.append(c);
            out["changes"] = changes;
            py::list evaluations;
            for (auto c : rep.evaluations) evaluations.append(c);
            out["evaluations"] = evaluations;
            out["energy_before"] = rep.energy_before;
            out["energy_after"] = rep.energy_after;
            return out;
        },
        py::arg("data"), py::arg("labels"), py::arg("levels"), py::arg("sigma"), py::kw_only(),
        py::arg("allowed") = py::none(), py::arg("pairs") = py::none(), py::arg("unary") = py::none(),
        py::arg("data_weight") = 1.0, py::arg("smoothness") = 0.0, py::arg("max_sweeps") = 10,
        py::arg("min_changes") = 0, py::arg("cell") = 0, py::arg("origin") = py::make_tuple(0, 0, 0),
        py::arg("threads") = 0,
        "Iterated conditional modes on labels (uint8, updated in place) so that the blurred levels\n"
        "explain data: E = data_weight * |data - H levels[labels]|^2 + smoothness * #unlike\n"
        "6-neighbor pairs + pair unaries (U(b) = max(0, d), U(a) = max(0, -d)).\n\n"
        "data : (z, y, x) float32; labels : (z, y, x) uint8, writeable; levels : (K,) float32, K <= 8;\n"
        "sigma : (3,) PSF sigma in voxels; allowed : (z, y, x) uint8 bit masks or None;\n"
        "pairs : (P, 2) uint8 label pairs and unary : (P, z, y, x) float32, or None.\n"
        "cell : edge of the sweep's cells (0 = automatic, else >= max(4 r + 1, 3)); origin : (z, y, x) place of\n"
        "this volume in a larger one (the cells lie on the larger volume's lattice).\n"
        "Returns {'sweeps', 'changes', 'evaluations' (voxels whose best move each sweep computed: the\n"
        "others' decisions provably stand), 'energy_before', 'energy_after'}. Identical for any thread\n"
        "count.");

    m.def(
        "icm_energy",
        [](const py::object& data_obj, const py::object& labels_obj, const py::object& levels_obj,
           const py::object& sigma_obj, const py::object& pairs_obj, const py::object& unary_obj, double data_weight,
           double smoothness, int threads) {
            Model md = read_model(data_obj, levels_obj, pairs_obj, unary_obj);
            auto labels = require_shape<std::uint8_t>(labels_obj, "labels", dims(md.shape), false);
            double sigma[3];
            read_sigma(sigma_obj, sigma);
            const auto opt = read_options(data_weight, smoothness, 0, 0, 0, py::make_tuple(0, 0, 0));
            check_threads(threads);
            const float* d = md.data.data();
            const std::uint8_t* l = labels.data();
            const float* lv = md.levels.data();
            const auto K = static_cast<int>(md.levels.shape(0));
            const std::uint8_t* pr = md.n_pairs ? md.pairs.data() : nullptr;
            const float* un = md.n_pairs ? md.unary.data() : nullptr;
            double e;
            {
                py::gil_scoped_release release;
                e = segment::icm_energy(d, l, md.shape, lv, K, sigma, pr, md.n_pairs, un, opt, threads);
            }
            return e;
        },
        py::arg("data"), py::arg("labels"), py::arg("levels"), py::arg("sigma"), py::kw_only(),
        py::arg("pairs") = py::none(), py::arg("unary") = py::none(), py::arg("data_weight") = 1.0,
        py::arg("smoothness") = 0.0, py::arg("threads") = 0, "The energy icm minimizes, for given labels.");

    m.def(
        "shell_moves",
        [](const py::object& data_obj, const py::object& labels_obj, const py::object& levels_obj,
           const py::object& sigma_obj, const py::object& components_obj, int target, const py::object& pairs_obj,
           const py::object& unary_obj, double data_weight, double smoothness, int threads) {
            Model md = read_model(data_obj, levels_obj, pairs_obj, unary_obj);
            auto labels = require_shape<std::uint8_t>(labels_obj, "labels", dims(md.shape), true);
            auto comp = require_shape<std::int32_t>(components_obj, "components", dims(md.shape), false);
            double sigma[3];
            read_sigma(sigma_obj, sigma);
            const auto opt = read_options(data_weight, smoothness, 0, 0, 0, py::make_tuple(0, 0, 0));
            check_threads(threads);
            check_labels_alias(md, span("labels", labels), {span("components", comp)});
            const float* d = md.data.data();
            std::uint8_t* l = labels.mutable_data();
            const float* lv = md.levels.data();
            const auto K = static_cast<int>(md.levels.shape(0));
            const std::int32_t* cp = comp.data();
            const std::uint8_t* pr = md.n_pairs ? md.pairs.data() : nullptr;
            const float* un = md.n_pairs ? md.unary.data() : nullptr;
            std::int64_t flipped;
            {
                py::gil_scoped_release release;
                flipped = segment::shell_moves(d, l, md.shape, lv, K, sigma, cp, target, pr, md.n_pairs, un, opt,
                                               threads);
            }
            return flipped;
        },
        py::arg("data"), py::arg("labels"), py::arg("levels"), py::arg("sigma"), py::arg("components"),
        py::arg("target"), py::kw_only(), py::arg("pairs") = py::none(), py::arg("unary") = py::none(),
        py::arg("data_weight") = 1.0, py::arg("smoothness") = 0.0, py::arg("threads") = 0,
        "Components (int32 ids > 0, tried in increasing order) turned to the label `target` as a whole\n"
        "where that lowers the energy icm minimizes (labels updated in place). Returns the voxels changed.");
}

}  // namespace tomofuse::bindings
