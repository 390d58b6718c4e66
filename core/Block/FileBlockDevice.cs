using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.Core.Block;

/// <summary>
/// A device backed by one local file (Linux). Reads and writes are positional (pread/pwrite via
/// <see cref="RandomAccess"/>), so concurrent requests need no lock. Durability: FLUSH and FUA call
/// fdatasync, which covers every write that completed before it. Trim and write-zeroes punch a
/// hole (the range reads as zeros) and fall back to writing zeros where the file system cannot.
/// All connections share the file and its page cache, so multi-connection is safe.
/// </summary>
public sealed partial class FileBlockDevice : IBlockDevice, IDisposable
{
    private const int FallocFlKeepSize = 0x01;
    private const int FallocFlPunchHole = 0x02;
    private const int ZeroFillChunk = 1024 * 1024;

    private readonly SafeFileHandle _handle;
    private volatile bool _punchHoleUnsupported;

    /// <summary>Opens <paramref name="path"/>, creating it when missing. With <paramref name="size"/> the file is grown (sparse) to it; without, the file's length is the size.</summary>
    public FileBlockDevice(string name, string path, long? size = null, bool readOnly = false)
    {
        Name = name;
        Path = path;
        ReadOnly = readOnly;
        _handle = File.OpenHandle(path, readOnly ? FileMode.Open : FileMode.OpenOrCreate,
            readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.Read, FileOptions.Asynchronous);
        long length = RandomAccess.GetLength(_handle);
        if (size is long wanted)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(wanted);
            if (length < wanted)
            {
                if (readOnly)
                    throw new BlockDeviceException(BlockErrorKind.InvalidArgument, $"read-only file '{path}' is {length} bytes, shorter than {wanted}");
                RandomAccess.SetLength(_handle, wanted);
            }
            Size = wanted;
        }
        else
        {
            Size = length;
        }
    }

    public string Name { get; }
    public string Path { get; }
    public long Size { get; }
    public bool ReadOnly { get; }
    public bool SupportsMultiConnection => true;

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        BlockRange.Check(this, offset, buffer.Length, "read");
        int done = 0;
        try
        {
            while (done < buffer.Length)
            {
                int n = await RandomAccess.ReadAsync(_handle, buffer[done..], offset + done, ct).ConfigureAwait(false);
                if (n == 0)
                {
                    buffer.Span[done..].Clear(); // past the file's end (it shrank underneath us): zeros
                    break;
                }
                done += n;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            throw Translate(ex, $"read of {buffer.Length} bytes at offset {offset}");
        }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct = default)
    {
        BlockRange.CheckWritable(this, "write");
        BlockRange.Check(this, offset, data.Length, "write");
        try
        {
            await RandomAccess.WriteAsync(_handle, data, offset, ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            throw Translate(ex, $"write of {data.Length} bytes at offset {offset}");
        }
        if (fua)
            await FlushAsync(ct).ConfigureAwait(false);
    }

    public ValueTask FlushAsync(CancellationToken ct = default)
    {
        if (ReadOnly)
            return ValueTask.CompletedTask;
        // fdatasync blocks; run it off the caller so concurrent requests keep flowing.
        return new ValueTask(Task.Run(DataSync, ct));
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken ct = default)
    {
        BlockRange.CheckWritable(this, "trim");
        BlockRange.Check(this, offset, length, "trim");
        return ZeroRangeAsync(offset, length, "trim", ct);
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, bool fua, CancellationToken ct = default)
    {
        BlockRange.CheckWritable(this, "write-zeroes");
        BlockRange.Check(this, offset, length, "write-zeroes");
        await ZeroRangeAsync(offset, length, "write-zeroes", ct).ConfigureAwait(false);
        if (fua)
            await FlushAsync(ct).ConfigureAwait(false);
    }

    private async ValueTask ZeroRangeAsync(long offset, long length, string operation, CancellationToken ct)
    {
        if (length == 0)
            return;
        if (!_punchHoleUnsupported)
        {
            if (Fallocate(FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0)
                return;
            int errno = Marshal.GetLastPInvokeError();
            if (errno is 95 /* EOPNOTSUPP */ or 38 /* ENOSYS */)
                _punchHoleUnsupported = true;
            else
                throw ErrnoException(errno, $"{operation} of {length} bytes at offset {offset}");
        }
        byte[] zeros = new byte[(int)Math.Min(length, ZeroFillChunk)];
        try
        {
            for (long done = 0; done < length; done += zeros.Length)
            {
                int count = (int)Math.Min(zeros.Length, length - done);
                await RandomAccess.WriteAsync(_handle, zeros.AsMemory(0, count), offset + done, ct).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            throw Translate(ex, $"{operation} of {length} bytes at offset {offset}");
        }
    }

    private void DataSync()
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            if (fdatasync((int)_handle.DangerousGetHandle()) != 0)
                throw ErrnoException(Marshal.GetLastPInvokeError(), "fdatasync");
        }
        catch (ObjectDisposedException ex)
        {
            throw Translate(ex, "fdatasync");
        }
        finally
        {
            if (added)
                _handle.DangerousRelease();
        }
    }

    private int Fallocate(int mode, long offset, long length)
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            return fallocate((int)_handle.DangerousGetHandle(), mode, offset, length);
        }
        catch (ObjectDisposedException ex)
        {
            throw Translate(ex, "fallocate");
        }
        finally
        {
            if (added)
                _handle.DangerousRelease();
        }
    }

    private BlockDeviceException ErrnoException(int errno, string operation)
    {
        var kind = errno is 28 /* ENOSPC */ or 122 /* EDQUOT */ or 27 /* EFBIG */ ? BlockErrorKind.NoSpace : BlockErrorKind.Io;
        return new BlockDeviceException(kind, $"{operation} on device '{Name}' ({Path}) failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }

    private BlockDeviceException Translate(Exception ex, string operation)
    {
        // On Unix an IOException's HResult carries the raw errno; 0x70/0x80070070 is the Windows "disk full".
        bool noSpace = ex is IOException { HResult: 28 or 122 or 27 or 0x70 or unchecked((int)0x80070070) };
        return new BlockDeviceException(noSpace ? BlockErrorKind.NoSpace : BlockErrorKind.Io,
            $"{operation} on device '{Name}' ({Path}) failed: {ex.Message}", ex);
    }

    public void Dispose() => _handle.Dispose();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(int fd, int mode, long offset, long length);
}
