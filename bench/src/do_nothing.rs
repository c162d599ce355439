//! A middleware that does the least any session middleware does on every request: one
//! `Rc` put in the request's extensions and one boxed future (`bench-server do-nothing`,
//! the reference for `/plain`, which never touches the session).

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::HttpMessage as _;

/// The middleware.
pub struct DoNothing;

/// What it puts in each request's extensions.
struct Marker;

impl<S, B> Transform<S, ServiceRequest> for DoNothing
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = DoNothingService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(DoNothingService {
            service: Rc::new(service),
        }))
    }
}

/// The middleware around one worker's service.
pub struct DoNothingService<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for DoNothingService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        request.extensions_mut().insert(Rc::new(Marker));
        let service = Rc::clone(&self.service);
        Box::pin(async move { service.call(request).await })
    }
}
