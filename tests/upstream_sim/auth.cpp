// The --auth modes. Each failure is a 401 with a JSON body, and for bearer tokens the
// WWW-Authenticate header a client uses to tell "send credentials" from "refresh your token":
//   none                    every data request passes
//   bearer:T                Authorization: Bearer T
//   apikey:H:V              header H: V
//   oauth2:ID:SECRET        POST /oauth/token (client credentials grant) issues tokens that
//                           live --token-ttl seconds; data requests carry Bearer <token>
#include <fmt/format.h>

#include <cctype>

#include "app.hpp"

namespace upstream_sim {

namespace {

std::string_view header(const Request& req, std::string_view name) {
  auto it = req.find(boost::beast::string_view(name.data(), name.size()));
  if (it == req.end()) return {};
  return {it->value().data(), it->value().size()};
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// "Bearer abc" -> "abc" (the scheme is case-insensitive); nullopt for another scheme.
std::optional<std::string_view> credentials(std::string_view authorization,
                                            std::string_view scheme) {
  auto space = authorization.find(' ');
  if (space == std::string_view::npos || !iequals(authorization.substr(0, space), scheme))
    return std::nullopt;
  auto value = authorization.substr(space + 1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (value.empty()) return std::nullopt;
  return value;
}

Response unauthorized(std::string_view error, std::string_view description,
                      std::string_view www_authenticate) {
  auto res = json_response(http::status::unauthorized,
                           fmt::format(R"({{"error":{},"error_description":{}}})",
                                       json_quote(error), json_quote(description)));
  if (!www_authenticate.empty())
    res.set(http::field::www_authenticate,
            boost::beast::string_view(www_authenticate.data(), www_authenticate.size()));
  return res;
}

}  // namespace

std::optional<Response> App::check_auth(const Request& req) {
  const Auth& auth = opt_.auth;
  switch (auth.kind) {
    case Auth::Kind::none:
      return std::nullopt;
    case Auth::Kind::apikey:
      if (header(req, auth.a) == auth.b) return std::nullopt;
      return unauthorized("invalid_api_key", fmt::format("send the API key in header {}", auth.a),
                          "");
    case Auth::Kind::bearer:
    case Auth::Kind::oauth2: {
      auto token = credentials(header(req, "Authorization"), "Bearer");
      if (!token)
        return unauthorized("invalid_request", "no bearer token", R"(Bearer realm="upstream_sim")");
      if (auth.kind == Auth::Kind::bearer && *token == auth.a) return std::nullopt;
      if (auth.kind == Auth::Kind::oauth2) {
        auto it = tokens_.find(std::string(*token));
        if (it != tokens_.end() && std::chrono::steady_clock::now() < it->second)
          return std::nullopt;
        if (it != tokens_.end()) tokens_.erase(it);  // expired: forget it
      }
      return unauthorized("invalid_token", "the access token is unknown or expired",
                          R"(Bearer error="invalid_token")");
    }
  }
  return std::nullopt;
}

Response App::token_endpoint(const Request& req) {
  const Auth& auth = opt_.auth;
  if (auth.kind != Auth::Kind::oauth2)
    return error_response(http::status::not_found, "no token endpoint: --auth is not oauth2");
  if (req.method() != http::verb::post) {
    auto res = error_response(http::status::method_not_allowed, "use POST for /oauth/token");
    res.set(http::field::allow, "POST");
    return res;
  }
  auto form = parse_params(req.body());
  if (!form) return error_response(http::status::bad_request, "invalid_request");
  if (!form->contains("grant_type") || form->at("grant_type") != "client_credentials")
    return error_response(http::status::bad_request, "unsupported_grant_type");

  // RFC 6749 2.3.1: credentials in HTTP Basic (each part form-encoded), or in the form body.
  std::optional<std::string> id, secret;
  if (auto basic = credentials(header(req, "Authorization"), "Basic")) {
    auto decoded = base64_decode(*basic);
    auto colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon != std::string::npos) {
      id = url_decode(decoded->substr(0, colon));
      secret = url_decode(decoded->substr(colon + 1));
    }
  } else if (form->contains("client_id") && form->contains("client_secret")) {
    id = form->at("client_id");
    secret = form->at("client_secret");
  }
  if (!id || !secret || *id != auth.a || *secret != auth.b) {
    return unauthorized("invalid_client", "unknown client or wrong secret",
                        R"(Basic realm="upstream_sim")");
  }

  auto now = std::chrono::steady_clock::now();
  std::erase_if(tokens_, [&](const auto& t) { return t.second <= now; });  // bounded memory
  static constexpr std::string_view kChars =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string token = "tok_";
  for (int i = 0; i < 32; ++i) token += kChars[token_rng_() % kChars.size()];
  tokens_[token] = now + std::chrono::seconds(opt_.token_ttl_s);
  auto res =
      json_response(http::status::ok,
                    fmt::format(R"({{"access_token":{},"token_type":"Bearer","expires_in":{}}})",
                                json_quote(token), opt_.token_ttl_s));
  res.set(http::field::cache_control, "no-store");
  return res;
}

}  // namespace upstream_sim
