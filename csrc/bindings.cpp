// Python bindings of the compiled core (filled in by the packed-runtime work).
#include <nanobind/nanobind.h>

namespace nb = nanobind;

NB_MODULE(_core, m) {
    m.doc() = "xnorpp compiled core: packed binary kernels";
    m.def("version", []() { return 1; }, "ABI version of the compiled core.");
}
