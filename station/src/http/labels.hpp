// The label routes' work, apart from the rest of the API because it stands on the line's
// labelling (core/labelling.hpp): a device's label as PNG, and a reprint.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/station.hpp"

namespace station::http {

// The device's label rendered with its batch's template, as PNG bytes (Errc::not_found for
// an unknown serial).
std::string render_label_png(core::Station& station, const std::string& serial);

// Prints the device's label again (core::reprint_label): {"serial", "printer", "status",
// "detail", "label_id"}.
nlohmann::json reprint_device_label(core::Station& station, const std::string& serial, const std::string& actor);

}  // namespace station::http
