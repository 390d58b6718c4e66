using FeitianK8s.Cli;

return await FeitianCli.RunAsync(args);
