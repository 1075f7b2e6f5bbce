use lambda_runtime::{Error, LambdaEvent, service_fn};
use leadspace_enrich::{
    bootstrap::build_app,
    config::Config,
    handler::{deadline_of, handle_request},
    memory, metrics,
};
use serde_json::Value;

fn main() -> Result<(), Error> {
    let started = std::time::Instant::now();
    // Before the runtime starts its threads: the allocator's settings are process-wide.
    let mapped = memory::map_large_allocations();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(started, mapped))
}

async fn serve(started: std::time::Instant, large_allocations_mapped: bool) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    if !large_allocations_mapped {
        tracing::warn!("glibc refused the mmap threshold: large buffers may stay in the heap and raise peak memory");
    }
    let config = Config::from_env()
        .inspect_err(|e| tracing::error!(error = %leadspace_enrich::chain::error_chain(e), "invalid configuration"))?;
    let app = build_app(config).await?;
    let app = &app;
    let cold = &std::sync::atomic::AtomicBool::new(true);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if cold.swap(false, std::sync::atomic::Ordering::Relaxed) {
            metrics::cold_start(started.elapsed().as_millis() as u64);
        }
        let deadline = deadline_of(&event.context);
        handle_request(app, event.payload, deadline, Some(&event.context.request_id)).await
    }))
    .await
}
