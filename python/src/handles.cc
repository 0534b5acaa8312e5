#include "handles.h"

#include <string>

#include "errors.h"

namespace kvcache::python {

namespace {

// A valid address for an empty buffer (an empty entry has no bytes in the pool).
std::byte kEmpty[1];

template <typename T>
T* Owner(PyObject* obj) {
  try {
    return py::cast<T*>(py::handle(obj));
  } catch (...) {
    return nullptr;
  }
}

// "release", interned once (the module is never unloaded).
PyObject* ReleaseName() {
  static PyObject* name = PyUnicode_InternFromString("release");
  return name;
}

// Drops the memoryview the context manager handed out; one that still has arrays made
// from it stays alive (and keeps its export of the owner) until they go.
void ReleaseMemoryview(py::object& memoryview) {
  if (!memoryview) return;
  PyObject* done = PyObject_CallMethodNoArgs(memoryview.ptr(), ReleaseName());
  if (done == nullptr) {
    if (!PyErr_ExceptionMatches(PyExc_BufferError)) throw py::error_already_set();
    PyErr_Clear();  // an array made from it is alive: it goes when the array does
  }
  Py_XDECREF(done);
  memoryview = py::object();
}

// A memoryview over `owner` through its buffer slot. Called once per `with` block, so
// it goes straight to the C API.
py::object MemoryviewOf(const py::object& owner) {
  PyObject* mv = PyMemoryView_FromObject(owner.ptr());
  if (mv == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(mv);
}

extern "C" int ViewGetBuffer(PyObject* obj, Py_buffer* buffer, int flags) {
  View* view = Owner<View>(obj);
  if (view == nullptr || view->released()) {
    buffer->obj = nullptr;
    PyErr_SetString(PyExc_BufferError, "the view is released");
    return -1;
  }
  std::span<const std::byte> data = view->data();
  void* ptr = data.empty() ? kEmpty : const_cast<std::byte*>(data.data());
  if (PyBuffer_FillInfo(buffer, obj, ptr, static_cast<Py_ssize_t>(data.size()), 1, flags) < 0) {
    return -1;
  }
  ++view->exports;
  return 0;
}

extern "C" void ViewReleaseBuffer(PyObject* obj, Py_buffer*) {
  if (View* view = Owner<View>(obj)) view->OnBufferReleased();
}

extern "C" int ReservationGetBuffer(PyObject* obj, Py_buffer* buffer, int flags) {
  Reservation* r = Owner<Reservation>(obj);
  if (r == nullptr || r->done()) {
    buffer->obj = nullptr;
    PyErr_SetString(PyExc_BufferError, "the reservation is committed or aborted");
    return -1;
  }
  std::span<std::byte> data = r->data();
  void* ptr = data.empty() ? kEmpty : data.data();
  if (PyBuffer_FillInfo(buffer, obj, ptr, static_cast<Py_ssize_t>(data.size()), 0, flags) < 0) {
    return -1;
  }
  ++r->exports;
  return 0;
}

extern "C" void ReservationReleaseBuffer(PyObject* obj, Py_buffer*) {
  if (Reservation* r = Owner<Reservation>(obj)) r->OnBufferReleased();
}

// pybind11's own buffer slots cannot count releases; these replace them.
void InstallBufferSlots(py::handle type, getbufferproc get, releasebufferproc release) {
  auto* heap = reinterpret_cast<PyHeapTypeObject*>(type.ptr());
  heap->as_buffer.bf_getbuffer = get;
  heap->as_buffer.bf_releasebuffer = release;
  heap->ht_type.tp_as_buffer = &heap->as_buffer;
}

}  // namespace

std::vector<uint32_t> View::prefix_tokens() const {
  if (!view_.valid()) return {};
  return view_.prefix_tokens();
}

py::object View::Enter(py::object self) {
  if (released()) throw py::value_error("the view is released");
  memoryview_ = MemoryviewOf(self);
  return memoryview_;
}

void View::Release() {
  ReleaseMemoryview(memoryview_);
  if (exports == 0) {
    Check(view_.Release());
  } else {
    release_pending_ = true;
  }
}

void View::OnBufferReleased() {
  if (--exports == 0 && release_pending_) {
    release_pending_ = false;
    // Called from a buffer slot, which cannot raise; the view is released either way.
    view_.Release().IgnoreError();
  }
}

py::object Reservation::Enter(py::object self) {
  if (done()) throw py::value_error("the reservation is committed or aborted");
  memoryview_ = MemoryviewOf(self);
  return memoryview_;
}

void Reservation::DropOwnMemoryview() { ReleaseMemoryview(memoryview_); }

void Reservation::Commit() {
  if (done()) throw py::value_error("the reservation is committed or aborted");
  DropOwnMemoryview();
  if (exports != 0) {
    // Publishing bytes that something can still write would let readers see them change.
    PyErr_SetString(PyExc_BufferError,
                    "cannot commit while a buffer made from the reservation is alive "
                    "(delete the arrays or memoryviews over it first)");
    throw py::error_already_set();
  }
  Status status;
  {
    py::gil_scoped_release unlocked;
    status = reservation_.Commit();
  }
  Check(status);
}

void Reservation::Abort() {
  DropOwnMemoryview();
  if (exports == 0) {
    Check(reservation_.Abort());
  } else {
    abort_pending_ = true;
  }
}

void Reservation::Exit(bool failed) {
  if (done()) return;  // committed or aborted inside the block
  if (failed) return Abort();
  DropOwnMemoryview();
  if (exports != 0) {
    Abort();
    PyErr_SetString(PyExc_BufferError,
                    "a buffer made from the reservation outlives the block; nothing was "
                    "committed (delete the arrays or memoryviews over it inside the block)");
    throw py::error_already_set();
  }
  Commit();
}

void Reservation::OnBufferReleased() {
  if (--exports == 0 && abort_pending_) {
    abort_pending_ = false;
    // Called from a buffer slot, which cannot raise; the reservation is used up either way.
    reservation_.Abort().IgnoreError();
  }
}

void BindHandles(py::module_& m) {
  py::class_<View> view(m, "View", py::buffer_protocol(), R"doc(
A pinned entry. Its bytes stay in the pool, unchanged and never evicted, until the view
is released: at the end of the `with` block, or later if an array or memoryview made
from it is still alive then (the pin goes with the last of them).

    with manager.view("pool", 42) as mv:          # read-only memoryview into the pool
        a = numpy.frombuffer(mv, dtype=numpy.float16)  # no copy
)doc");
  view.def_property_readonly("info", &View::info, "The entry's metadata (EntryInfo).")
      .def_property_readonly("released", &View::released)
      .def_property_readonly("prefix_tokens", &View::prefix_tokens)
      .def("__len__", [](const View& v) { return v.info().size_bytes; })
      .def("__exit__", [](View& v, py::args) {
        v.Release();
        return false;
      })
      .def("release", &View::Release, "Releases the pin (deferred while buffers are alive).");
  // __enter__ needs the Python object itself (the memoryview's owner).
  view.attr("__enter__") = py::cpp_function(
      [](py::object self) { return self.cast<View&>().Enter(self); }, py::is_method(view));
  InstallBufferSlots(view, ViewGetBuffer, ViewReleaseBuffer);

  py::class_<Reservation> res(m, "Reservation", py::buffer_protocol(), R"doc(
Space reserved in a pool for an entry whose bytes are written in place. The `with`
block yields a writable memoryview; a clean exit commits (readers then see the whole
entry at once), an exception aborts and frees the space.
)doc");
  res.def_property_readonly("size", &Reservation::size)
      .def_property_readonly("done", &Reservation::done)
      .def("__len__", &Reservation::size)
      .def("__exit__",
           [](Reservation& r, py::object type, py::object, py::object) {
             r.Exit(!type.is_none());
             return false;
           })
      .def("commit", &Reservation::Commit)
      .def("abort", &Reservation::Abort);
  res.attr("__enter__") = py::cpp_function(
      [](py::object self) { return self.cast<Reservation&>().Enter(self); },
      py::is_method(res));
  InstallBufferSlots(res, ReservationGetBuffer, ReservationReleaseBuffer);
}

}  // namespace kvcache::python
