namespace FeitianK8s.Core.Nbd;

/// <summary>The peer broke the protocol; the server answers by closing that connection only.</summary>
public sealed class NbdProtocolException(string message) : Exception(message);
