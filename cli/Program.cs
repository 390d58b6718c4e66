using FeitianK8s.Cli;
using FeitianK8s.Core.Common;

// `up` and `nbd serve` run the NBD engine here; before any socket is used (see InlineSocketCompletions).
InlineSocketCompletions.EnableUnlessSet();
return await FeitianCli.RunAsync(args);
