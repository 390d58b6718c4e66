namespace FeitianK8s.Master.Tests;

/// <summary>
/// Fault-injecting decorator over a real log segment: once armed, writes fail like a
/// dying disk (EIO), after optionally letting a prefix of the write through (a torn record).
/// </summary>
public sealed class FlakyStream(Stream inner) : Stream
{
    /// <summary>When set, the next writes fail after passing this many bytes through.</summary>
    public int? FailAfterBytes { get; set; }

    public override void Write(byte[] buffer, int offset, int count)
    {
        if (FailAfterBytes is { } allowed)
        {
            inner.Write(buffer, offset, Math.Min(allowed, count));
            inner.Flush();
            throw new IOException("injected write failure (EIO)");
        }
        inner.Write(buffer, offset, count);
    }

    public override void Flush() => inner.Flush();
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => inner.Length;
    public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
