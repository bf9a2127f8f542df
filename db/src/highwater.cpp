#include "db/highwater.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace station::db {
namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  const int e = errno;
  throw Error(Errc::io_error, what + ": " + std::strerror(e), e);
}

void sync_path(const std::filesystem::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open " + p.string());
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw_errno("cannot sync " + p.string());
}

}  // namespace

std::filesystem::path highwater_path(const std::filesystem::path& db_path) {
  return db_path.string() + "-highwater.json";
}

std::map<std::string, std::int64_t> read_counters(Connection& conn) {
  std::map<std::string, std::int64_t> out;
  auto st = conn.prepare("SELECT prefix, next FROM serial_counters");
  while (st.step()) out[st.text(0)] = st.int64(1);
  return out;
}

void write_highwater(const std::filesystem::path& file, const HighWater& marks) {
  nlohmann::json j = {{"format", "station-highwater-v1"}, {"station_id", marks.station_id}, {"seq", marks.seq},
                      {"hash", marks.hash},                {"time", marks.time},             {"counters", marks.counters}};
  const std::string text = j.dump(2) + "\n";
  const std::filesystem::path tmp = file.string() + ".tmp";
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno("cannot write " + tmp.string());
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        throw_errno("cannot write " + tmp.string());
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
      ::close(fd);
      throw_errno("cannot sync " + tmp.string());
    }
    ::close(fd);
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) throw_errno("cannot replace " + file.string());
  sync_path(file.parent_path().empty() ? "." : file.parent_path(), O_RDONLY | O_DIRECTORY);
}

std::optional<HighWater> read_highwater(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  try {
    const auto j = nlohmann::json::parse(text.str());
    if (j.at("format").get<std::string>() != "station-highwater-v1")
      throw Error(Errc::parse_error, "unknown format");
    HighWater h;
    h.station_id = j.at("station_id").get<std::string>();
    h.seq = j.at("seq").get<std::int64_t>();
    h.hash = j.at("hash").get<std::string>();
    h.time = j.at("time").get<std::string>();
    h.counters = j.at("counters").get<std::map<std::string, std::int64_t>>();
    return h;
  } catch (const std::exception& e) {
    throw Error(Errc::parse_error, "the high-water file " + file.string() + " is unreadable (" + e.what() +
                                       "); restore it from the last audit export or checkpoint copy");
  }
}

std::vector<std::string> counters_below(Connection& conn, const HighWater& marks) {
  const auto now = read_counters(conn);
  std::vector<std::string> below;
  for (const auto& [prefix, mark] : marks.counters) {
    const auto it = now.find(prefix);
    const std::int64_t have = it == now.end() ? 0 : it->second;
    if (have < mark) below.push_back(prefix + ": " + std::to_string(have) + " < " + std::to_string(mark));
  }
  return below;
}

void require_above_highwater(Connection& conn) {
  if (conn.above_highwater) return;
  const char* name = ::sqlite3_db_filename(conn.raw(), "main");
  if (name == nullptr || *name == '\0') return;  // in-memory: nothing to restore
  const std::string db_file(name);
  const auto marks = read_highwater(highwater_path(db_file));
  if (marks) {
    const auto below = counters_below(conn, *marks);
    if (!below.empty()) {
      std::string list;
      for (const auto& b : below) list += (list.empty() ? "" : ", ") + b;
      throw Error(Errc::tampered,
                  "refusing to allocate serial numbers or MACs: the database is behind the checkpoint of entry " +
                      std::to_string(marks->seq) + " (" + marks->time + ") whose high-water marks are in " +
                      highwater_path(db_file).string() + " (" + list +
                      "); it was restored from an older backup, so these numbers may already be on devices. Run "
                      "`station db resume-after-restore --data DIR` to raise the counters above the marks");
    }
  }
  conn.above_highwater = true;
}

}  // namespace station::db
