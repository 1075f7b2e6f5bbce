use lambda_runtime::{Error, LambdaEvent, service_fn};
use leadspace_enrich::{
    bootstrap::build_app,
    config::Config,
    handler::{deadline_of, handle},
    metrics,
};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = std::time::Instant::now();
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let app = build_app(config).await?;
    let app = &app;
    let cold = &std::sync::atomic::AtomicBool::new(true);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if cold.swap(false, std::sync::atomic::Ordering::Relaxed) {
            metrics::cold_start(started.elapsed().as_millis() as u64);
        }
        let deadline = deadline_of(&event.context);
        handle(app, event.payload, deadline).await
    }))
    .await
}
