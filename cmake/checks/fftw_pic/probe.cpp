#include <fftw3.h>

// Pulls the planner and the executor (and with them most of the archive) into
// a shared object.
extern "C" int tomofuse_fftw_pic_probe() {
    fftwf_complex* a = fftwf_alloc_complex(16);
    fftwf_plan p = fftwf_plan_dft_2d(4, 4, a, a, FFTW_FORWARD, FFTW_ESTIMATE);
    int ok = p != nullptr;
    if (p) {
        fftwf_execute_dft(p, a, a);
        fftwf_destroy_plan(p);
    }
    fftwf_free(a);
    return ok;
}
