#include "http/labels.hpp"

#include <mutex>

#include "core/batches.hpp"
#include "core/labelling.hpp"
#include "labels/render.hpp"

namespace station::http {

std::string render_label_png(core::Station& station, const std::string& serial) {
  std::lock_guard lock(station.mutex());
  const labels::LabelData data = core::device_label_data(station, serial);
  std::string template_name = "default";
  if (!data.batch.empty())
    if (const auto b = core::find_batch(station, data.batch)) template_name = b->settings.label_template;
  const Bytes png = labels::render_png(station.config().label_template(template_name), data);
  return std::string(png.begin(), png.end());
}

nlohmann::json reprint_device_label(core::Station& station, const std::string& serial, const std::string& actor) {
  // reprint_label is thread-safe on its own; the printer may take seconds, so the station's
  // mutex is not held around it.
  return core::reprint_label(station, serial, actor);
}

}  // namespace station::http
