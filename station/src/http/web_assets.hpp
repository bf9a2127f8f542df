// The operator's page (station/web/), embedded into the binary at build time by
// station/web/embed.cmake: no files to install, nothing fetched from the internet.
#pragma once

#include <string_view>

namespace station::http {

struct WebAsset {
  std::string_view path;          // "/", "/app.js", "/app.css"
  std::string_view content_type;
  std::string_view bytes;
};

// The asset served at `path`, or null.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace station::http
