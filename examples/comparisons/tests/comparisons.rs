//! Each comparison's PlexSpaces side runs and gives the outcome the original program gives.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_gen_server() {
    comparisons::gen_server::demo().await.expect("gen_server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orleans_grain() {
    comparisons::grain::demo().await.expect("grain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_workflow() {
    comparisons::workflow::demo().await.expect("workflow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ray_actor() {
    comparisons::ray_actor::demo().await.expect("ray actor");
}
