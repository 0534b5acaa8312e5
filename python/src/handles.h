// kvcache.View and kvcache.Reservation: Python objects that own a pinned entry or a
// put reservation and export its bytes in the pool through the buffer protocol, so a
// memoryview or numpy array over them reads or writes the shared memory itself.
//
// Every buffer exported holds a reference to its owner and is counted: the pin is
// released, or the reservation aborted, only once no exported buffer is left, so no
// Python object can ever point at bytes the pool has reused.
#pragma once

#include <pybind11/pybind11.h>

#include "kvcache/manager.h"

namespace kvcache::python {

namespace py = pybind11;

class View {
 public:
  explicit View(EntryView view) : view_(std::move(view)), info_(view_.info()) {}

  const EntryInfo& info() const { return info_; }
  bool released() const { return !view_.valid() || release_pending_; }
  std::span<const std::byte> data() const { return view_.data(); }
  std::vector<uint32_t> prefix_tokens() const;

  // The memoryview handed out by the context manager.
  py::object Enter(py::object self);
  // Releases the pin now, or as soon as the last exported buffer is released.
  void Release();

  // Buffer protocol bookkeeping (called by the type's slots).
  int exports = 0;
  void OnBufferReleased();

 private:
  EntryView view_;
  EntryInfo info_;
  bool release_pending_ = false;
  py::object memoryview_;
};

class Reservation {
 public:
  explicit Reservation(PutReservation reservation)
      : reservation_(std::move(reservation)), size_(reservation_.data().size()) {}

  bool done() const { return !reservation_.valid() || abort_pending_; }
  size_t size() const { return size_; }
  std::span<std::byte> data() const { return reservation_.data(); }

  py::object Enter(py::object self);
  // Publishes the entry. BufferError while a buffer made from it is still alive.
  void Commit();
  // Frees the space now, or as soon as the last exported buffer is released.
  void Abort();
  // Context manager exit: commit on a clean exit, abort on an exception.
  void Exit(bool failed);

  int exports = 0;
  void OnBufferReleased();

 private:
  void DropOwnMemoryview();
  PutReservation reservation_;
  size_t size_;
  bool abort_pending_ = false;
  py::object memoryview_;
};

// Registers View and Reservation (with their buffer slots) on the module.
void BindHandles(py::module_& m);

}  // namespace kvcache::python
