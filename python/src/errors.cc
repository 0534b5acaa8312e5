#include "errors.h"

#include <string>

namespace kvcache::python {

namespace py = pybind11;

void Raise(const Status& status) {
  // The classes live in Python (kvcache/errors.py) so that they can also derive from
  // the matching builtin (ValueError, PermissionError, ...).
  py::object errors = py::module_::import("kvcache.errors");
  py::object cls = errors.attr("for_code")(std::string(CodeName(status.code())));
  PyErr_SetObject(cls.ptr(), py::str(status.message()).ptr());
  throw py::error_already_set();
}

}  // namespace kvcache::python
