using FeitianK8s.Testing;

namespace FeitianK8s.Core.Tests.Suite;

/// <summary>
/// The suite check that keeps assertion-free tests out: every [Fact]/[Theory] under tests/ must
/// assert something (see <see cref="TestAssertionScanner"/> for what counts).
/// </summary>
public sealed class EveryTestAssertsTests(ITestOutputHelper output)
{
    [Fact]
    public void Every_test_method_in_the_suite_asserts_something()
    {
        var scanner = new TestAssertionScanner().AddDirectory(RepositoryPaths.Combine("tests"));
        var tests = scanner.CountTests();
        var unasserted = scanner.FindUnasserted();
        output.WriteLine($"{tests} test methods scanned, {unasserted.Count} without an assertion");
        // Sanity: the scan really saw the suite (hundreds of tests), so an empty result means something.
        Assert.True(tests > 300, $"only {tests} test methods found under {RepositoryPaths.Combine("tests")}");
        Assert.True(unasserted.Count == 0, "test methods without any assertion:\n" + string.Join("\n", unasserted));
    }

    [Fact]
    public void A_test_method_without_an_assertion_is_reported_by_name_and_line()
    {
        const string source = """
            namespace Sample;

            public sealed class SampleTests
            {
                [Fact]
                public async Task Passes_silently()
                {
                    var x = await Task.FromResult(1);
                    if (x == 1)
                    {
                        return;
                    }
                }

                [Fact]
                public void Asserts_directly() => Assert.Equal(1, 1);

                [Theory]
                [InlineData(1)]
                public async Task Awaits_an_assertion(int n) => await Assert.ThrowsAsync<InvalidOperationException>(() => Task.FromException(new InvalidOperationException($"{n}")));

                [Xunit.FactAttribute]
                public void Uses_an_asserting_helper() => AssertPositive(3);

                [Fact]
                public void Uses_a_helper_that_asserts_through_another() => CheckTwice(3);

                [Fact]
                public void Uses_a_helper_named_like_an_assertion_that_asserts_nothing() => VerifyNothing(3);

                [Fact]
                public void Asserts_inside_a_lambda() => new[] { 1, 2 }.ToList().ForEach(i => Assert.True(i > 0));

                [Fact]
                public void Asserts_fluently() => 3.Should().Be(3);

                [Fact]
                public void Calls_a_helper_without_an_assertion_prefix() => Helper(3);

                public void NotATest() { }

                private static void AssertPositive(int n) => Assert.True(n > 0);
                private static void CheckTwice(int n) { AssertPositive(n); AssertPositive(n); }
                private static void VerifyNothing(int n) => Console.WriteLine(n);
                private static void Helper(int n) => Assert.True(n > 0);
            }
            """;
        var scanner = new TestAssertionScanner().Add("Sample/SampleTests.cs", source);
        Assert.Equal(9, scanner.CountTests());
        var unasserted = scanner.FindUnasserted();
        Assert.Equal(
        [
            new UnassertedTest("Sample/SampleTests.cs", 6, "SampleTests", "Passes_silently"),
            new UnassertedTest("Sample/SampleTests.cs", 29, "SampleTests", "Uses_a_helper_named_like_an_assertion_that_asserts_nothing"),
            new UnassertedTest("Sample/SampleTests.cs", 38, "SampleTests", "Calls_a_helper_without_an_assertion_prefix"),
        ], unasserted);
        Assert.Equal("Sample/SampleTests.cs:6 SampleTests.Passes_silently", unasserted[0].ToString());
    }
}
