#include "core/labelling.hpp"

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "db/records.hpp"
#include "labels/printer.hpp"
#include "labels/render.hpp"
#include "labels/report.hpp"

namespace station::core {
namespace {

struct DeviceLabel {
  db::DeviceRecord device;
  labels::LabelData data;
  std::string template_name = "default";
};

// On a read-only connection of its own (Station::reader): labels print while the line
// and the API read and write, without taking the station's lock.
DeviceLabel load(Station& station, const std::string& serial) {
  auto lease = station.reader();
  auto& records = *lease;
  auto device = records.device_by_serial(serial);
  if (!device) throw Error(Errc::not_found, fmt::format("no device with serial {}", serial));
  std::optional<db::IdentityRecord> identity;
  for (const auto& i : records.identities_of(device->id))
    if (i.status == "active") identity = i;
  if (!identity || !identity->dpp_uri)
    throw Error(Errc::not_found, fmt::format("device {} has no active identity with a DPP URI to label", serial));
  DeviceLabel out;
  out.device = *device;
  out.data.uri = *identity->dpp_uri;
  out.data.serial = device->serial;
  out.data.mac = device->mac.value_or("");
  out.data.date = identity->created.substr(0, 10);
  out.data.fixture = device->fixture.value_or("");
  if (device->batch_id) {
    auto st = records.connection().prepare("SELECT name, product, settings FROM batches WHERE id = ?");
    st.bind(1, *device->batch_id);
    if (st.step()) {
      out.data.batch = st.text(0);
      out.data.model = st.text(1);
      const auto settings = nlohmann::json::parse(st.text(2), nullptr, false);
      if (settings.is_object()) out.template_name = settings.value("label_template", std::string("default"));
    }
  }
  return out;
}

// Renderers prepare their skeleton once per template.
const labels::ZplRenderer& renderer(const StationConfig& config, const std::string& name) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<labels::ZplRenderer>> cache;
  const std::string key = config.config_file.string() + "\n" + name;
  const std::lock_guard lock(mutex);
  auto& r = cache[key];
  if (!r) r = std::make_unique<labels::ZplRenderer>(config.label_template(name));
  return *r;
}

// Each print is journaled with its labels row; a successful print of a verified device
// moves it to `labelled` in the same entry and, when asked, to `done` in a second entry of
// the same transaction. The entries are committed here, or handed to the caller as one unit
// (`deferred`) to queue itself; their mutations hold copies, never references into here.
class JournalReporter final : public labels::PrintReporter {
 public:
  JournalReporter(Station& station, const DeviceLabel& label, std::string actor, bool reprint,
                  const std::optional<nlohmann::json>& finish, std::vector<db::Journal::Request>* deferred)
      : station_(station), label_(label), actor_(std::move(actor)), reprint_(reprint), done_(finish),
        deferred_(deferred) {}

  void report(const labels::PrintReport& r) override {
    const bool to_labelled = r.ok && (label_.device.state == "verified" || label_.device.state == "locked");
    const std::string action = !r.ok ? "label.failed" : reprint_ ? "label.reprinted" : "label.printed";
    const std::int64_t device_id = label_.device.id;
    const std::string subject = "device:" + label_.device.serial;
    std::vector<db::Journal::Request> entries;
    entries.emplace_back(
        db::EntryRequest{actor_, action, subject,
                         {{"serial", label_.device.serial}, {"printer", r.printer}, {"result", r.result},
                          {"bytes", r.bytes}, {"fixture", label_.data.fixture}}},
        [device_id, printer = r.printer, result = r.ok ? std::string("printed") : r.result, to_labelled,
         id = label_id_](db::Connection& c) {
          std::vector<db::RowRef> rows;
          rows.push_back(db::insert_label(c, device_id, printer, result));
          *id = rows.back().id;
          if (to_labelled) rows.push_back(db::set_device_state(c, device_id, "labelled"));
          return rows;
        });
    if (to_labelled && done_) {
      entries.emplace_back(db::EntryRequest{actor_, "device.done", subject, *done_}, [device_id](db::Connection& c) {
        return std::vector<db::RowRef>{db::set_device_state(c, device_id, "done")};
      });
    }
    if (deferred_ != nullptr) *deferred_ = std::move(entries);
    else station_.journal().commit_together(std::move(entries));
    done = to_labelled && done_.has_value();
  }

  std::int64_t label_id() const { return *label_id_; }
  bool done = false;

 private:
  Station& station_;
  const DeviceLabel& label_;
  std::string actor_;
  bool reprint_;
  const std::optional<nlohmann::json>& done_;
  std::vector<db::Journal::Request>* deferred_;
  std::shared_ptr<std::int64_t> label_id_ = std::make_shared<std::int64_t>(0);
};

}  // namespace

labels::LabelData device_label_data(Station& station, const std::string& serial) { return load(station, serial).data; }

PrintOutcome print_device_label(Station& station, const std::string& serial, const std::string& actor, bool reprint,
                                const std::optional<std::string>& printer, const std::optional<nlohmann::json>& done,
                                std::vector<db::Journal::Request>* record) {
  const DeviceLabel label = load(station, serial);
  const auto& config = station.config();
  std::string zpl;
  renderer(config, label.template_name).render(label.data, zpl);

  PrintOutcome out;
  std::unique_ptr<labels::Printer> device;
  const std::string name = printer && !printer->empty() ? *printer : config.line.printer;
  if (name.empty()) {
    // No printer configured: one ZPL file per label in DIR/labels (a spool folder).
    const auto dir = config.resolve("labels");
    std::filesystem::create_directories(dir);
    device = labels::open_printer("dir:" + dir.string());
    out.printer = "files";
  } else {
    const auto it = config.printers.find(name);
    if (it == config.printers.end())
      throw Error(Errc::config_error, fmt::format("printer '{}' is not in [printers] of {}", name,
                                                  config.config_file.string()));
    device = it->second.open();
    out.printer = name;
  }
  // A reprint that completes a device whose first label failed finishes it.
  std::optional<nlohmann::json> finish = done;
  if (reprint && !finish) finish = nlohmann::json{{"serial", serial}, {"after", "reprint"}};
  JournalReporter reporter(station, label, actor, reprint, finish, record);
  try {
    labels::print_and_report(*device, labels::PrintJob{serial, zpl, "zpl"}, reporter);
    out.status = "printed";
    out.detail = "printed";
  } catch (const Error& e) {
    out.status = "failed";
    out.detail = e.what();
  }
  out.label_id = reporter.label_id();
  out.done = reporter.done;
  return out;
}

nlohmann::json reprint_label(Station& station, const std::string& serial, const std::string& actor) {
  const auto o = print_device_label(station, serial, actor, true);
  return {{"serial", serial}, {"printer", o.printer}, {"status", o.status}, {"detail", o.detail},
          {"label_id", o.label_id}};
}

}  // namespace station::core
