// Turns a core Status into the kvcache.errors exception of its code.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>

#include "kvcache/status.h"

namespace kvcache::python {

// Raises (as a C++ exception pybind11 passes to Python) the kvcache.errors class named
// after the status code, carrying the core's message. REQUIRES: !status.ok(), GIL held.
[[noreturn]] void Raise(const Status& status);

inline void Check(const Status& status) {
  if (!status.ok()) Raise(status);
}

template <typename T>
T Take(Result<T> result) {
  if (!result.ok()) Raise(result.status());
  return std::move(result).value();
}

}  // namespace kvcache::python
