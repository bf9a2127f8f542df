// libFuzzer target: the HTTP API's request side (station::http_request), everything a
// client controls before a handler runs. The input is read as
//   METHOD TARGET \n AUTHORIZATION \n LAST-EVENT-ID \n BODY
// and goes through method and target parsing, route matching, the query parser of the
// matched route and its JSON body checks. Each may refuse with an ApiError (a 4xx status);
// anything else (another exception, a 5xx, a crash, a sanitizer report) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/request.hpp"

namespace http = station::http;

namespace {

std::string_view next_line(std::string_view& in) {
  const auto nl = in.find('\n');
  const std::string_view line = in.substr(0, nl);
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  return line;
}

void one_request(std::string_view in) {
  const std::string_view request_line = next_line(in);
  const std::string_view authorization = next_line(in);
  const std::string_view last_event_id = next_line(in);
  const std::string_view body = in;

  const auto space = request_line.find(' ');
  const http::Method method = http::parse_method(request_line.substr(0, space));
  const http::Target target =
      http::parse_target(space == std::string_view::npos ? std::string_view() : request_line.substr(space + 1));
  const http::Match match = http::match_route(method, target.path);
  if (match.route == nullptr) __builtin_trap();
  for (const auto& [name, value] : match.params) http::check_name(name, value);
  (void)http::bearer_token(authorization);
  switch (match.route->id) {
    case http::RouteId::devices: (void)http::parse_device_query(target.query); break;
    case http::RouteId::journal: (void)http::parse_journal_query(target.query); break;
    case http::RouteId::events: (void)http::parse_last_event_id(last_event_id); break;
    case http::RouteId::batches_open: (void)http::parse_open_batch(body); break;
    case http::RouteId::users_add: (void)http::parse_add_user(body); break;
    case http::RouteId::device_reprovision: (void)http::parse_reprovision(body); break;
    case http::RouteId::batch_pause:
    case http::RouteId::batch_resume:
    case http::RouteId::batch_close:
    case http::RouteId::device_reprint: http::parse_empty_body(body); break;
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  try {
    one_request(in);
  } catch (const http::ApiError& e) {
    if (e.status < 400 || e.status >= 500 || e.code.empty() || e.message.empty()) __builtin_trap();
    (void)http::to_json(e, 1).dump();
  }
  return 0;
}
