// Device labels: rendering a device's label from its record (its batch's template, the
// fixture it was provisioned on), sending it to a printer, recording the print in `labels`
// and the journal; reprints on demand.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/station.hpp"
#include "db/journal.hpp"
#include "labels/label.hpp"

namespace station::core {

// The label data of a device from its records (Errc::not_found if no such serial).
labels::LabelData device_label_data(Station& station, const std::string& serial);

struct PrintOutcome {
  std::string printer;   // the printer's name, or "files" (ZPL written under DIR/labels)
  std::string status;    // printed | failed
  std::string detail;    // the printer's answer or the failure in plain words
  std::int64_t label_id = 0;  // 0 while the record is the caller's to commit (`record`)
  bool done = false;     // the device was moved to `done` with its label's entry
};

// Prints the device's label on `printer` (a [printers] name; empty: the fixture's or the
// line's printer, else ZPL files under DIR/labels) and records it (labels row + journal
// entry "label.printed" or, with reprint, "label.reprinted" by actor). A print that labels
// a verified (or locked) device moves it to `labelled`; with `done` set, the same
// transaction also journals "device.done" with those details and moves it to `done` (the
// device needs nothing after its label, so one flush instead of two). With `record` set,
// the entries are not committed here: they are left in *record as one unit for the caller
// to queue (the line queues it and goes on with the fixture's next device). Thread-safe.
PrintOutcome print_device_label(Station& station, const std::string& serial, const std::string& actor,
                                bool reprint, const std::optional<std::string>& printer = std::nullopt,
                                const std::optional<nlohmann::json>& done = std::nullopt,
                                std::vector<db::Journal::Request>* record = nullptr);

// For POST /api/devices/{serial}/reprint: print_device_label(..., reprint=true) as JSON
// {"serial", "printer", "status", "detail", "label_id"}.
nlohmann::json reprint_label(Station& station, const std::string& serial, const std::string& actor);

}  // namespace station::core
