#include <string>

#include "common/error.hpp"
#include "labels/label.hpp"

namespace station::labels {
namespace {

void append_escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\' || c == ';' || c == ',' || c == ':' || c == '"') out.push_back('\\');
    out.push_back(c);
  }
}

}  // namespace

std::string wifi_payload(const WifiCredentials& w) {
  if (w.ssid.empty()) throw Error(Errc::invalid_argument, "SoftAP credentials: the SSID is empty");
  if (w.security != "WPA" && w.security != "WEP" && w.security != "nopass") {
    throw Error(Errc::invalid_argument,
                "SoftAP credentials: security '" + w.security + "' is not WPA, WEP or nopass");
  }
  std::string out = "WIFI:T:" + w.security + ";S:";
  append_escaped(out, w.ssid);
  out += ';';
  if (w.security != "nopass") {
    out += "P:";
    append_escaped(out, w.password);
    out += ';';
  }
  if (w.hidden) out += "H:true;";
  out += ';';
  return out;
}

}  // namespace station::labels
