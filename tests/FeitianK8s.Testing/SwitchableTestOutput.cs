using Xunit.Abstractions;

namespace FeitianK8s.Testing;

/// <summary>
/// Output for class fixtures that outlive one test: each test points it at its own
/// <see cref="ITestOutputHelper"/>, so the shared cluster's logs land in the running test.
/// </summary>
public sealed class SwitchableTestOutput : ITestOutputHelper
{
    private volatile ITestOutputHelper? _current;

    public ITestOutputHelper? Current
    {
        get => _current;
        set => _current = value;
    }

    public void WriteLine(string message) => _current?.WriteLine(message);

    public void WriteLine(string format, params object[] args) => _current?.WriteLine(format, args);
}
