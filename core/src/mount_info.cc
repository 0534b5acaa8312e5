#include "mount_info.h"

#include <fstream>

namespace kvcache {
namespace {

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// The fields of `line`, split at runs of spaces (mountinfo escapes spaces inside one).
std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

}  // namespace

std::string UnescapeMountField(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && IsOctal(field[i + 1]) &&
        IsOctal(field[i + 2]) && IsOctal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(field[i]);
  }
  return out;
}

std::optional<MountInfo> ParseMountInfoLine(std::string_view line) {
  std::vector<std::string_view> fields = Fields(line);
  // Six fixed fields, then the optional ones up to "-", then type and source.
  size_t sep = 0;
  for (size_t i = 6; i < fields.size(); ++i) {
    if (fields[i] == "-") {
      sep = i;
      break;
    }
  }
  if (sep == 0 || sep + 2 >= fields.size()) return std::nullopt;
  MountInfo m;
  m.device = std::string(fields[2]);
  m.mount_point = UnescapeMountField(fields[4]);
  m.fstype = std::string(fields[sep + 1]);
  m.source = UnescapeMountField(fields[sep + 2]);
  return m;
}

std::vector<MountInfo> ReadMountInfo(const std::string& path) {
  std::vector<MountInfo> mounts;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (std::optional<MountInfo> m = ParseMountInfoLine(line)) mounts.push_back(std::move(*m));
  }
  return mounts;
}

}  // namespace kvcache
