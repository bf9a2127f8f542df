#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/error.hpp"
#include "internal/handles.hpp"
#include "internal/printers.hpp"

namespace station::labels::internal {
namespace {

// A label id becomes a file name: keep [A-Za-z0-9._-], map the rest to '_', never "." or "..".
std::string file_stem(const std::string& label) {
  std::string s = label;
  for (char& c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  if (s.find_first_not_of('.') == std::string::npos) s.insert(s.begin(), '_');
  return s;
}

class DirPrinter final : public Printer {
 public:
  DirPrinter(std::string name, std::filesystem::path dir) : name_(std::move(name)), dir_(std::move(dir)) {}
  const std::string& name() const noexcept override { return name_; }

  void print(const PrintJob& job) override {
    if (job.label.empty()) throw Error(Errc::invalid_argument, "printer " + name_ + ": the label has no id");
    std::error_code ec;
    if (!std::filesystem::is_directory(dir_, ec)) {
      throw Error(Errc::not_found, "printer " + name_ + ": folder " + dir_.string() +
                                       " does not exist; create it or fix the printer setting");
    }
    std::string file = file_stem(job.label);
    file.append(".").append(job.extension);
    const auto final_path = dir_ / file;
    const auto tmp_path = dir_ / std::string(".").append(file).append(".tmp");
    // Written whole, flushed, then renamed into place: a reader never sees half a label.
    Fd fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) fail("cannot create " + tmp_path.string());
    std::size_t done = 0;
    while (done < job.data.size()) {
      const ssize_t w = ::write(fd.get(), job.data.data() + done, job.data.size() - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("cannot write " + tmp_path.string());
      }
      done += static_cast<std::size_t>(w);
    }
    if (::fsync(fd.get()) != 0) fail("cannot flush " + tmp_path.string());
    fd.reset();
    if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) fail("cannot rename to " + final_path.string());
    Fd dfd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd) ::fsync(dfd.get());
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    const int err = errno;
    throw Error(Errc::io_error, "printer " + name_ + ": " + what + ": " + std::strerror(err) +
                                    "; check the folder's permissions and free space", err);
  }
  std::string name_;
  std::filesystem::path dir_;
};

}  // namespace

std::unique_ptr<Printer> make_dir_printer(std::string name, std::string path) {
  if (path.empty()) throw Error(Errc::invalid_argument, "printer '" + name + "': dir: needs a folder, e.g. dir:/var/lib/station/labels");
  return std::make_unique<DirPrinter>(std::move(name), std::filesystem::path(path));
}

}  // namespace station::labels::internal
