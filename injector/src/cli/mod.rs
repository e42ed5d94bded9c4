//! The toxiproxy-cli compatible client.
