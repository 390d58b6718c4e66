using System.Reflection;
using DotNext.IO.Log;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;

namespace FeitianK8s.Master.Raft;

/// <summary>
/// DotNext's <see cref="WriteAheadLog"/> with a workaround for a race in DotNext.Net.Cluster 6.12.2
/// that leaves a member unable to vote after a snapshot is installed on it.
/// </summary>
/// <remarks>
/// <para>The race. The log's background flusher reads the snapshot index (and the commit index) before
/// it takes the log's read lock, and the last entry index after it (<c>WriteAheadLog.FlushAsync&lt;TBackground&gt;</c>,
/// WriteAheadLog.Flusher.cs, line 58 in the stack trace of the failure). Installing a snapshot holds the
/// log's overwrite lock and ends with <c>LastEntryIndex = max(tail, snapshotIndex)</c>
/// (<c>WriteAheadLog.AppendAsync(entry, startIndex)</c>, its <c>IsSnapshot</c> branch). A flusher woken
/// just before the install (a commit on a member that was behind, which the leader follows at once with
/// the snapshot) therefore flushes from the old snapshot's successor to the new snapshot index, reading the
/// metadata of both ends (<c>WriteAheadLog.FlushAsync(fromIndex, toIndex)</c>, <c>metadataPages.GetView</c>).
/// When the new snapshot index lies on a metadata page (64 entries each) the member never wrote, that
/// read throws <see cref="WriteAheadLog.MissingPageException"/> ("WAL page N doesn't exist on the disk"),
/// the flusher keeps it as the log's background failure, and every later read, append and commit throws
/// it: the member can no longer answer a vote or a pre-vote, so two survivors of a leader kill never elect.</para>
/// <para>The workaround. Before a snapshot is installed past the tail, create (empty) the metadata pages
/// such a flusher reads: that of the entry after the tail and that of the snapshot index. The flusher then
/// reads zeroed metadata for entries the snapshot covers, flushes nothing it needs, and writes a checkpoint
/// whose last index is the snapshot's (the snapshot file is durable before the install moves the tail).
/// Nothing is appended: a created page holds no entry, the log's bounds do not change, later appends
/// overwrite it, and the cleaner deletes it with the pages the snapshot covers. The tail is read before the
/// install takes the log; the Raft member handles an install and a leader's entries under one lock (its
/// transition lock), so the tail does not move in between (only a deposed leader's own append still in
/// flight could, and it would have to end just before a page boundary to matter).</para>
/// <para>The pages are reached by reflection into DotNext's private members, resolved when the type is
/// first used: a DotNext version that renamed them stops a master at start naming this type, instead of
/// running without the workaround.</para>
/// </remarks>
public sealed class MasterWriteAheadLog : WriteAheadLog, IAuditTrail<IRaftLogEntry>
{
    private static readonly MetadataPageAccess Pages = MetadataPageAccess.Resolve();

    public MasterWriteAheadLog(Options configuration, IStateMachine stateMachine)
        : base(configuration, stateMachine)
    {
    }

    /// <summary>The Raft member installs a snapshot through this (and appends entries at an index).</summary>
    ValueTask IAuditTrail<IRaftLogEntry>.AppendAsync<TEntry>(TEntry entry, long startIndex, CancellationToken token)
    {
        var tail = LastEntryIndex;
        if (entry.IsSnapshot && startIndex > tail)
        {
            Pages.Create(this, tail + 1);
            Pages.Create(this, startIndex);
        }
        return AppendAsync(entry, startIndex, token);
    }

    private sealed class MetadataPageAccess(FieldInfo metadataPages, FieldInfo manager, FieldInfo entrySize, FieldInfo pageSize, MethodInfo getOrAddPage)
    {
        public static MetadataPageAccess Resolve()
        {
            const BindingFlags instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;
            var metadataPages = Find(typeof(WriteAheadLog).GetField("metadataPages", instance), "WriteAheadLog.metadataPages");
            var manager = Find(metadataPages.FieldType.GetField("<manager>P", instance), "MetadataPageManager's page manager");
            var entrySize = Find(metadataPages.FieldType.GetField("MetadataEntryAlignedSize", instance), "MetadataPageManager.MetadataEntryAlignedSize");
            var pageSize = Find(manager.FieldType.GetField("PageSize", instance), "PageManager.PageSize");
            var getOrAddPage = Find(manager.FieldType.GetMethod("GetOrAddPage", instance, [typeof(uint)]), "PageManager.GetOrAddPage(uint)");
            return new MetadataPageAccess(metadataPages, manager, entrySize, pageSize, getOrAddPage);
        }

        private static T Find<T>(T? member, string name)
            where T : MemberInfo
            => member ?? throw new MissingMemberException(
                $"{name} is not in this DotNext.Net.Cluster: re-check the workaround in {nameof(MasterWriteAheadLog)} against this version");

        /// <summary>Creates the metadata page holding the entry at <paramref name="index"/> unless it exists.</summary>
        public void Create(WriteAheadLog log, long index)
        {
            var pages = metadataPages.GetValue(log)!;
            var pageManager = manager.GetValue(pages)!;
            var address = (ulong)index * (uint)(int)entrySize.GetValue(pages)!;
            var page = (uint)(address / (uint)(int)pageSize.GetValue(pageManager)!);
            getOrAddPage.Invoke(pageManager, [page]);
        }
    }
}
