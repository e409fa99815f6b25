//! Extract functions: tasks that pull rows from outside.

pub mod decode;
pub mod fetch;
pub mod http;
pub mod weather;

pub use http::ExtractHttp;
pub use weather::ExtractWeather;
