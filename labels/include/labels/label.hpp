// What goes on one label: the device's DPP URI and the human-readable fields.
#pragma once

#include <optional>
#include <string>

namespace station::labels {

// The device's SoftAP credentials, for the WIFI: second code.
struct WifiCredentials {
  std::string ssid;
  std::string password;          // empty for an open network
  std::string security = "WPA";  // WPA, WEP or nopass
  bool hidden = false;
};

struct LabelData {
  std::string uri;        // the DPP bootstrapping URI, encoded byte for byte in the QR code
  std::string serial;
  std::string mac;        // 12 hex digits (any case, ':' or '-' separators allowed); shown AA:BB:..
  std::string model;
  std::string date;       // as it should read, e.g. 2026-11-22
  std::string batch;
  std::string fixture;    // the fixture number the device left, so labels cannot be swapped
  std::optional<WifiCredentials> softap;
};

// The `WIFI:` payload phones understand (ZXing's format): T, S, P, H fields, with `\`, `;`,
// `,`, `:` and `"` escaped by a backslash. Example: WIFI:T:WPA;S:acme-1234;P:s3cr\;t;;
std::string wifi_payload(const WifiCredentials& w);

}  // namespace station::labels
