//! `ordeal`: the command-line entry point. The subcommands arrive with the cluster issue.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("ordeal: no subcommands yet (`ordeal test` arrives with the cluster issue)")
}
