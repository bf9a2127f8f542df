#include "labels/report.hpp"

#include <ctime>
#include <ostream>

namespace station::labels {
namespace {

void json_string(std::ostream& out, std::string_view s) {
  out << '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out << "\\\""; break;
      case '\\': out << "\\\\"; break;
      case '\n': out << "\\n"; break;
      case '\r': out << "\\r"; break;
      case '\t': out << "\\t"; break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out << "\\u00" << kHex[c >> 4] << kHex[c & 15];
        } else {
          out << ch;
        }
    }
  }
  out << '"';
}

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  const std::time_t tt = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void JsonLinesReporter::report(const PrintReport& r) {
  out_ << "{\"label\":";
  json_string(out_, r.label);
  out_ << ",\"printer\":";
  json_string(out_, r.printer);
  out_ << ",\"time\":\"" << rfc3339(r.time) << "\",\"ok\":" << (r.ok ? "true" : "false") << ",\"code\":";
  json_string(out_, errc_name(r.code));
  out_ << ",\"result\":";
  json_string(out_, r.result);
  out_ << ",\"bytes\":" << r.bytes << "}\n";
  out_.flush();
}

void print_and_report(Printer& printer, const PrintJob& job, PrintReporter& reporter, const Clock& clock) {
  PrintReport r;
  r.label = job.label;
  r.printer = printer.name();
  r.bytes = job.data.size();
  try {
    printer.print(job);
  } catch (const Error& e) {
    r.time = clock();
    r.code = e.code();
    r.result = e.what();
    reporter.report(r);
    throw;
  } catch (const std::exception& e) {
    r.time = clock();
    r.code = Errc::internal;
    r.result = e.what();
    reporter.report(r);
    throw;
  }
  r.time = clock();
  r.ok = true;
  r.result = "printed";
  reporter.report(r);
}

}  // namespace station::labels
