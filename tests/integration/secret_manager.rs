//! A local Secret Manager: a gRPC server answering `AccessSecretVersion` of
//! `google.cloud.secretmanager.v1.SecretManagerService`, with the request and response messages of
//! the official proto (as generated in `gcloud-sdk`). It knows some secret versions, refuses some
//! with PERMISSION_DENIED, and says NOT_FOUND for the rest.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use gcloud_sdk::google::cloud::secretmanager::v1::{AccessSecretVersionRequest, AccessSecretVersionResponse};
use gcloud_sdk::proto_ext::secretmanager::SecretPayload;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::{Code, Status};

/// What the double answers for a secret version name.
#[derive(Clone)]
pub(crate) enum Answer {
    Value(String),
    Denied,
}

#[derive(Clone)]
struct SecretManagerService {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

struct Access(SecretManagerService);

impl tonic::server::UnaryService<AccessSecretVersionRequest> for Access {
    type Response = AccessSecretVersionResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, Status>;

    fn call(&mut self, request: tonic::Request<AccessSecretVersionRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let name = request.into_inner().name;
            service.asked.lock().unwrap().push(name.clone());
            let answer = service.answers.lock().unwrap().get(&name).cloned();
            match answer {
                Some(Answer::Value(value)) => Ok(tonic::Response::new(AccessSecretVersionResponse {
                    name,
                    payload: Some(SecretPayload {
                        data: value.as_bytes().to_vec().into(),
                        data_crc32c: None,
                    }),
                })),
                Some(Answer::Denied) => Err(Status::new(
                    Code::PermissionDenied,
                    format!("Permission 'secretmanager.versions.access' denied for resource '{name}'"),
                )),
                None => Err(Status::new(
                    Code::NotFound,
                    format!("Secret Version [{name}] not found."),
                )),
            }
        })
    }
}

impl<B> Service<http::Request<B>> for SecretManagerService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if request.uri().path() != "/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion" {
                return Ok(Status::unimplemented("only AccessSecretVersion is implemented").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Access(service), request).await)
        })
    }
}

impl tonic::server::NamedService for SecretManagerService {
    const NAME: &'static str = "google.cloud.secretmanager.v1.SecretManagerService";
}

/// A running double; it stops with the test process.
pub(crate) struct SecretManager {
    /// `http://127.0.0.1:PORT`, for `DPF_SECRET_MANAGER_URL`.
    pub url: String,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl SecretManager {
    /// Starts a double answering `answers` (full version name → answer).
    pub(crate) fn start(answers: &[(&str, Answer)]) -> SecretManager {
        let service = SecretManagerService {
            answers: Arc::new(Mutex::new(
                answers.iter().map(|(n, a)| (n.to_string(), a.clone())).collect(),
            )),
            asked: Arc::default(),
        };
        let (asked, known) = (service.asked.clone(), service.answers.clone());
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await
                    .unwrap();
            });
        });
        let address = receiver.recv().unwrap();
        SecretManager {
            url: format!("http://{address}"),
            answers: known,
            asked,
        }
    }

    /// Makes the double answer `name` with `answer` from now on.
    pub(crate) fn insert(&self, name: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(name.to_owned(), answer);
    }

    /// The secret version names asked for so far.
    pub(crate) fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}
