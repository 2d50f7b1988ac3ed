// HTTP/1.1 transport for the App: Beast on Asio, asynchronous, keep-alive.
#pragma once

#include <boost/asio/io_context.hpp>

#include "app.hpp"

namespace upstream_sim {

// Binds 127.0.0.1:`port` (0 picks a free port), starts accepting on `ioc` and returns the
// bound port. Connections are served by whichever threads run `ioc`, until it stops. `app`
// must outlive `ioc`. Throws boost::system::system_error when the port cannot be bound.
[[nodiscard]] unsigned short start_server(boost::asio::io_context& ioc, unsigned short port,
                                          App& app);

}  // namespace upstream_sim
