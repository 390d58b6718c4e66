using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace FeitianK8s.Core.Tests.Suite;

/// <summary>A test method (by file, class and name) that contains no assertion.</summary>
public sealed record UnassertedTest(string File, int Line, string Class, string Method)
{
    public override string ToString() => $"{File}:{Line} {Class}.{Method}";
}

/// <summary>
/// Finds xunit test methods ([Fact], [Theory] and attributes derived by name from them) whose body
/// contains no assertion, by parsing the sources with Roslyn (syntax only, no compilation).
///
/// A method asserts when its body (lambdas and local functions included) contains:
/// <list type="bullet">
/// <item>a call on xunit's <c>Assert</c> class (awaited or not), or a fluent <c>Should*</c> call;</item>
/// <item>a call to a helper whose name starts with Assert, Expect, Verify or Check and that is declared
/// somewhere in the scanned sources and itself asserts by these same rules (transitively).</item>
/// </list>
/// Helpers are matched by name across all scanned files: a helper name that asserts in one place counts everywhere.
/// </summary>
public sealed class TestAssertionScanner
{
    private static readonly string[] HelperPrefixes = ["Assert", "Expect", "Verify", "Check"];
    private static readonly string[] TestAttributes = ["Fact", "Theory"];

    private readonly List<(string File, SyntaxTree Tree)> _trees = [];

    /// <summary>Adds one source file's text (<paramref name="file"/> is only used in reports).</summary>
    public TestAssertionScanner Add(string file, string source)
    {
        _trees.Add((file, CSharpSyntaxTree.ParseText(source, path: file)));
        return this;
    }

    /// <summary>Adds every .cs file under <paramref name="directory"/>, skipping build output (bin, obj).</summary>
    public TestAssertionScanner AddDirectory(string directory)
    {
        var sep = Path.DirectorySeparatorChar;
        foreach (var file in Directory.EnumerateFiles(directory, "*.cs", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var relative = Path.GetRelativePath(directory, file);
            if ($"{sep}{relative}".Contains($"{sep}bin{sep}", StringComparison.Ordinal) || $"{sep}{relative}".Contains($"{sep}obj{sep}", StringComparison.Ordinal))
            {
                continue;
            }
            Add(relative, File.ReadAllText(file));
        }
        return this;
    }

    /// <summary>How many test methods the scanned sources declare.</summary>
    public int CountTests() => TestMethods().Count();

    /// <summary>The test methods that contain no assertion, in file order.</summary>
    public IReadOnlyList<UnassertedTest> FindUnasserted()
    {
        var asserting = AssertingHelperNames();
        return TestMethods()
            .Where(t => !Asserts(t.Method, asserting))
            .Select(t => new UnassertedTest(t.File,
                t.Method.Identifier.GetLocation().GetLineSpan().StartLinePosition.Line + 1,
                (t.Method.Parent as TypeDeclarationSyntax)?.Identifier.Text ?? "?",
                t.Method.Identifier.Text))
            .ToList();
    }

    private IEnumerable<(string File, MethodDeclarationSyntax Method)> TestMethods() =>
        from t in _trees
        from m in t.Tree.GetRoot().DescendantNodes().OfType<MethodDeclarationSyntax>()
        where m.AttributeLists.SelectMany(l => l.Attributes).Any(IsTestAttribute)
        select (t.File, m);

    private static bool IsTestAttribute(AttributeSyntax attribute)
    {
        var name = attribute.Name switch
        {
            QualifiedNameSyntax q => q.Right.Identifier.Text,
            SimpleNameSyntax s => s.Identifier.Text,
            _ => attribute.Name.ToString(),
        };
        if (name.EndsWith("Attribute", StringComparison.Ordinal))
        {
            name = name[..^"Attribute".Length];
        }
        // [Fact], [Theory], and gated variants such as [MinikubeFact] or [RootTheory].
        return TestAttributes.Any(a => name.EndsWith(a, StringComparison.Ordinal));
    }

    /// <summary>Names of the helpers (methods and local functions with an assertion prefix) that assert, to a fixed point.</summary>
    private HashSet<string> AssertingHelperNames()
    {
        var helpers = _trees
            .SelectMany(t => t.Tree.GetRoot().DescendantNodes())
            .Select(n => n switch
            {
                MethodDeclarationSyntax m => (Name: m.Identifier.Text, Body: (SyntaxNode?)m.Body ?? m.ExpressionBody),
                LocalFunctionStatementSyntax f => (Name: f.Identifier.Text, Body: (SyntaxNode?)f.Body ?? f.ExpressionBody),
                _ => (Name: "", Body: null),
            })
            .Where(h => h.Body is not null && IsHelperName(h.Name))
            .ToList();
        var asserting = new HashSet<string>(StringComparer.Ordinal);
        bool grew;
        do
        {
            grew = false;
            foreach (var (name, body) in helpers)
            {
                if (!asserting.Contains(name) && ContainsAssertion(body!, asserting))
                {
                    asserting.Add(name);
                    grew = true;
                }
            }
        }
        while (grew);
        return asserting;
    }

    private static bool IsHelperName(string name) => HelperPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));

    private static bool Asserts(MethodDeclarationSyntax method, HashSet<string> assertingHelpers)
    {
        SyntaxNode? body = (SyntaxNode?)method.Body ?? method.ExpressionBody;
        return body is not null && ContainsAssertion(body, assertingHelpers);
    }

    private static bool ContainsAssertion(SyntaxNode body, HashSet<string> assertingHelpers) =>
        body.DescendantNodesAndSelf().OfType<InvocationExpressionSyntax>().Any(call => IsAssertion(call, assertingHelpers));

    private static bool IsAssertion(InvocationExpressionSyntax call, HashSet<string> assertingHelpers)
    {
        switch (call.Expression)
        {
            case MemberAccessExpressionSyntax member:
                var target = member.Expression switch
                {
                    IdentifierNameSyntax id => id.Identifier.Text,
                    QualifiedNameSyntax q => q.Right.Identifier.Text,
                    MemberAccessExpressionSyntax inner => inner.Name.Identifier.Text,
                    _ => "",
                };
                var name = member.Name.Identifier.Text;
                return target == "Assert"
                    || name.StartsWith("Should", StringComparison.Ordinal)
                    || assertingHelpers.Contains(name);
            case IdentifierNameSyntax id:
                return assertingHelpers.Contains(id.Identifier.Text);
            case GenericNameSyntax generic:
                return assertingHelpers.Contains(generic.Identifier.Text);
            default:
                return false;
        }
    }
}
