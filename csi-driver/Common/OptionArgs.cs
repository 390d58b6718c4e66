namespace FeitianK8s.Csi.Common;

/// <summary>The driver's command lines: <c>--name value</c> or <c>--name=value</c>, every option known and given a value.</summary>
public static class OptionArgs
{
    /// <summary>Option name → value (the last one wins). Throws <see cref="ArgumentException"/> naming the known options.</summary>
    public static Dictionary<string, string> Parse(IReadOnlyList<string> args, IReadOnlyCollection<string> known, string knownLabel)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            var eq = arg.IndexOf('=');
            string name, value;
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                (name, value) = (arg[..eq], arg[(eq + 1)..]);
            }
            else
            {
                if (i + 1 >= args.Count)
                {
                    throw new ArgumentException($"{arg} needs a value");
                }
                (name, value) = (arg, args[++i]);
            }
            if (!known.Contains(name))
            {
                throw new ArgumentException($"unknown option {name}; {knownLabel}: {string.Join(' ', known)}");
            }
            values[name] = value;
        }
        return values;
    }
}
