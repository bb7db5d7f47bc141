//! A service as the server mounts it. Each service crate exposes one function that returns its
//! [`ServiceModule`]; the server iterates the modules the operator asked for (`hie serve
//! --services`), mounts each and reports it in health. Tables need nothing here: every
//! migration lives in `hie-core`'s one ordered folder (sqlx keeps one version table per
//! database), named after the service owning it.

use std::convert::Infallible;

use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

type Mount = Box<dyn FnOnce(&mut RoutesBuilder) + Send>;

/// One service, ready to mount.
pub struct ServiceModule {
    /// The name `hie serve --services` knows it by (`population`).
    pub name: &'static str,
    /// Its full gRPC name (`hie.population.v1.PopulationRegistry`), which health reports.
    pub grpc_name: &'static str,
    mount: Mount,
}

impl std::fmt::Debug for ServiceModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceModule")
            .field("name", &self.name)
            .field("grpc_name", &self.grpc_name)
            .finish_non_exhaustive()
    }
}

impl ServiceModule {
    /// The module of a generated tonic server `service`, known as `name`.
    pub fn new<S>(name: &'static str, service: S) -> ServiceModule
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        ServiceModule {
            name,
            grpc_name: S::NAME,
            mount: Box::new(move |routes: &mut RoutesBuilder| {
                routes.add_service(service);
            }),
        }
    }

    /// Adds the service to the server's routes.
    pub fn mount(self, routes: &mut RoutesBuilder) {
        (self.mount)(routes)
    }
}

/// The modules among `available` that `wanted` names (every one when `wanted` is empty), in the
/// order of `available`; an unknown name is refused with the names there are.
pub fn choose(available: Vec<ServiceModule>, wanted: &[String]) -> Result<Vec<ServiceModule>, crate::Error> {
    let known: Vec<&'static str> = available.iter().map(|m| m.name).collect();
    check_names(&known, wanted)?;
    Ok(available
        .into_iter()
        .filter(|module| wanted.is_empty() || wanted.iter().any(|w| w == module.name))
        .collect())
}

/// Refuses a name in `wanted` that is not among `known`, naming the ones there are.
pub fn check_names(known: &[&str], wanted: &[String]) -> Result<(), crate::Error> {
    match wanted.iter().find(|w| !known.contains(&w.as_str())) {
        Some(unknown) => Err(crate::Error::invalid(
            "services",
            format!(
                "no service is called {unknown:?}; expected some of {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}
