//! Runs the four comparisons of `docs/comparisons.md` and checks each.
//! Prints `comparisons: gen_server, grain, workflow, ray actor: OK`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("{}", comparisons::gen_server::demo().await?);
    println!("{}", comparisons::grain::demo().await?);
    println!("{}", comparisons::workflow::demo().await?);
    println!("{}", comparisons::ray_actor::demo().await?);
    println!("comparisons: gen_server, grain, workflow, ray actor: OK");
    Ok(())
}
