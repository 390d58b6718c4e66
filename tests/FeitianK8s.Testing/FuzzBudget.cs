namespace FeitianK8s.Testing;

/// <summary>
/// How long each fuzz test runs and from which seed. <c>./test.sh</c> gives every fuzz test a
/// fixed budget of a few seconds; <c>bench/fuzz.sh</c> sets <c>FEITIAN_FUZZ_SECONDS</c> for a long
/// run. A failure prints CsCheck's seed of the shrunk case: <c>FEITIAN_FUZZ_SEED</c> replays it.
/// </summary>
public static class FuzzBudget
{
    public const int DefaultSeconds = 5;

    public static int Seconds =>
        int.TryParse(Environment.GetEnvironmentVariable("FEITIAN_FUZZ_SECONDS"), out int seconds) && seconds > 0 ? seconds : DefaultSeconds;

    /// <summary>The seed to replay, or null for a fresh random run.</summary>
    public static string? Seed =>
        Environment.GetEnvironmentVariable("FEITIAN_FUZZ_SEED") is { Length: > 0 } seed ? seed : null;
}
