#pragma version 0.4.3
# @title Devnet stand-in for the era-D Crynux Task contract (crynux-contracts@4c2d581)
# @notice Everything a client can call or observe has the real ABI and behaviour:
#         createTask / getTask / cancelTask / totalTasks, the events (same
#         indexed params and topic0), the revert strings, the queue fallback,
#         deletion of finished tasks and the deadline.
#         The Node and QOS contracts are folded in (node registry grouped by
#         GPU model, QoS-weighted random selection whose gas grows with the
#         free nodes, per-task QoS scores that set each node's pay) and the
#         commit/disclose protocol is condensed into owner-only `dev*`
#         functions that the devnet's simulated nodes call. Settlement follows
#         Task.sol: a node's fee is totalBalance * its task score / 50.

interface TaskQueue:
    def size() -> uint256: view
    def getSizeLimit() -> uint256: view
    def include(taskId: uint256) -> bool: view
    def pushTask(taskId: uint256, taskType: uint256, creator: address, taskHash: bytes32, dataHash: bytes32, vramLimit: uint256, taskFee: uint256, price: uint256): nonpayable
    def removeTask(taskId: uint256) -> TaskInQueue: nonpayable
    def removeCheapestTask() -> TaskInQueue: nonpayable

struct TaskInQueue:
    id: uint256
    taskType: uint256
    creator: address
    taskHash: bytes32
    dataHash: bytes32
    vramLimit: uint256
    taskFee: uint256
    price: uint256

MAX_RESULT: constant(uint256) = 1024
MAX_NODES: constant(uint256) = 1024
MAX_BATCH: constant(uint256) = 128
# free nodes tried as callback roots after a VRAM change
MAX_START: constant(uint256) = 16
MAX_KINDS: constant(uint256) = 16
# QOS.sol TASK_SCORE_REWARDS and getTaskScoreLimit()
SCORE_LIMIT: constant(uint256) = 50

# Field order and types are those of Task.sol's TaskInfo (18 fields).
struct TaskInfo:
    id: uint256
    taskType: uint256
    creator: address
    taskHash: bytes32
    dataHash: bytes32
    vramLimit: uint256
    isSuccess: bool
    selectedNodes: DynArray[address, 3]
    commitments: DynArray[bytes32, 3]
    nonces: DynArray[bytes32, 3]
    commitmentSubmitRounds: DynArray[uint256, 3]
    results: DynArray[Bytes[MAX_RESULT], 3]
    resultDisclosedRounds: DynArray[uint256, 3]
    resultNode: address
    aborted: bool
    timeout: uint256
    balance: uint256
    totalBalance: uint256

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

event TaskPending:
    taskId: uint256
    taskType: uint256
    creator: indexed(address)
    taskHash: bytes32
    dataHash: bytes32

event TaskStarted:
    taskId: uint256
    taskType: uint256
    creator: indexed(address)
    selectedNode: indexed(address)
    taskHash: bytes32
    dataHash: bytes32
    round: uint256

event TaskResultCommitmentsReady:
    taskId: indexed(uint256)

event TaskSuccess:
    taskId: indexed(uint256)
    result: Bytes[MAX_RESULT]
    resultNode: indexed(address)

event TaskAborted:
    taskId: indexed(uint256)
    reason: String[64]

event TaskResultUploaded:
    taskId: indexed(uint256)

event TaskNodeSuccess:
    taskId: indexed(uint256)
    nodeAddress: address
    fee: uint256

event TaskNodeSlashed:
    taskId: indexed(uint256)
    nodeAddress: address

event TaskNodeCancelled:
    taskId: indexed(uint256)
    nodeAddress: address

TASK_TYPE_SD: constant(uint256) = 0
TASK_TYPE_LLM: constant(uint256) = 1

# node states (Node.sol NODE_STATUS_*, the ones the devnet uses)
NODE_NONE: constant(uint8) = 0
NODE_FREE: constant(uint8) = 1
NODE_BUSY: constant(uint8) = 2
NODE_BUSY_QUITTING: constant(uint8) = 3

ERROR_COMMITMENT: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000001

owner: public(address)
taskQueue: TaskQueue
tasks: HashMap[uint256, TaskInfo]
nodeTasks: HashMap[address, uint256]
nextTaskId: uint256
timeout: uint256
numSuccessTasks: uint256
numAbortedTasks: uint256

# ---- node registry (stands in for Node.sol): free nodes indexed by GPU model
nodeState: HashMap[address, uint8]
nodeGpu: HashMap[address, uint256]          # GPU model index (Node.sol gpuID)
nodeScore: HashMap[address, uint256]        # selection weight (Node.sol NodeInfo.score)
groupNodes: HashMap[uint256, DynArray[address, MAX_NODES]]  # free nodes per model
groupIndex: HashMap[address, uint256]       # index + 1 in its group
groupScore: HashMap[uint256, uint256]       # sum of the free nodes' scores per model
numKinds: uint256
freeCount: uint256
nodeVram: public(uint256)
# ---- QOS.sol: task counts and scores
nodeTaskCount: HashMap[address, uint256]
nodeTaskScoreSum: HashMap[address, uint256]
currentScore: HashMap[address, uint256]     # nodeTaskScorePool[node][0]
# ---- Random.sol generator (the nonce is never reset)
rngSeed: bytes32
rngNonce: uint256


@deploy
def __init__(queue: address):
    self.owner = msg.sender
    self.taskQueue = TaskQueue(queue)
    self.nextTaskId = 1
    self.timeout = 15 * 60
    self.nodeVram = 24
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)


@internal
def _onlyOwner():
    assert msg.sender == self.owner, "Ownable: caller is not the owner"


# ---------------------------------------------------------------- client API

@payable
@external
def createTask(taskType: uint256, taskHash: bytes32, dataHash: bytes32, vramLimit: uint256, cap: uint256):
    assert taskType == TASK_TYPE_SD or taskType == TASK_TYPE_LLM, "Invalid task type"
    taskFee: uint256 = msg.value
    taskId: uint256 = self.nextTaskId
    self.nextTaskId = taskId + 1

    seed: bytes32 = keccak256(concat(blockhash(block.number - 1), taskHash, dataHash))
    if self._canSelect(vramLimit, taskType == TASK_TYPE_LLM):
        nodes: DynArray[address, 3] = self._randomSelect(vramLimit, taskType == TASK_TYPE_LLM, seed)
        log TaskPending(taskId=taskId, taskType=taskType, creator=msg.sender, taskHash=taskHash, dataHash=dataHash)
        self._start(taskId, taskType, msg.sender, taskHash, dataHash, vramLimit, taskFee, nodes)
    else:
        # "No available node": same order as Task.sol's catch branch: evict, TaskPending, push.
        if staticcall self.taskQueue.size() == staticcall self.taskQueue.getSizeLimit():
            evicted: TaskInQueue = extcall self.taskQueue.removeCheapestTask()
            log TaskAborted(taskId=evicted.id, reason="Task fee is too low")
        log TaskPending(taskId=taskId, taskType=taskType, creator=msg.sender, taskHash=taskHash, dataHash=dataHash)
        if cap == 0:
            # Solidity's `taskFee / cap` fails with Panic(0x12) (division by zero)
            raw_revert(concat(method_id("Panic(uint256)"), convert(18, bytes32)))
        extcall self.taskQueue.pushTask(taskId, taskType, msg.sender, taskHash, dataHash, vramLimit, taskFee, taskFee // cap)


@view
@external
def getTask(taskId: uint256) -> TaskInfo:
    return self.tasks[taskId]


@view
@external
def getNodeTask(nodeAddress: address) -> uint256:
    return self.nodeTasks[nodeAddress]


@view
@external
def totalTasks() -> uint256:
    return self.nextTaskId - 1


@view
@external
def totalSuccessTasks() -> uint256:
    return self.numSuccessTasks


@view
@external
def totalAbortedTasks() -> uint256:
    return self.numAbortedTasks


@external
def updateTimeout(t: uint256):
    self._onlyOwner()
    self.timeout = t


@external
def cancelTask(taskId: uint256):
    if self.tasks[taskId].id != 0:
        callerValid: bool = msg.sender == self.tasks[taskId].creator
        if not callerValid:
            for n: address in self.tasks[taskId].selectedNodes:
                if n == msg.sender:
                    callerValid = True
                    break
        assert callerValid, "Unauthorized to cancel task"
        self._cancelRunning(taskId)
    elif staticcall self.taskQueue.include(taskId):
        task: TaskInQueue = extcall self.taskQueue.removeTask(taskId)
        send(task.creator, task.taskFee)
        log TaskAborted(taskId=taskId, reason="Task Cancelled")
    else:
        raise "Task not exist"


# ---------------------------------------------------------------- node registry

@internal
def _markAvailable(node: address):
    # Node.markNodeAvailable: index the node, then Task.nodeAvailableCallback(node)
    k: uint256 = self.nodeGpu[node]
    self.groupNodes[k].append(node)
    self.groupIndex[node] = len(self.groupNodes[k])
    self.groupScore[k] += self.nodeScore[node]
    self.freeCount += 1
    self._nodeAvailableCallback(node)


@internal
def _markUnavailable(node: address):
    k: uint256 = self.nodeGpu[node]
    idx: uint256 = self.groupIndex[node] - 1
    last: address = self.groupNodes[k].pop()
    if last != node:
        self.groupNodes[k][idx] = last
        self.groupIndex[last] = idx + 1
    self.groupIndex[node] = 0
    self.groupScore[k] -= self.nodeScore[node]
    self.freeCount -= 1


@internal
def _startTaskOnNode(node: address):
    # Node.startTask + QOS.startTask
    assert self.nodeState[node] == NODE_FREE, "Node is not available"
    self._markUnavailable(node)
    self.nodeState[node] = NODE_BUSY
    self.nodeTaskCount[node] += 1
    self.currentScore[node] = 0


@view
@internal
def _taskScore(node: address) -> uint256:
    # QOS.getTaskScore, raised to 1 like Node.sol does for the multinomial
    score: uint256 = 20
    if self.nodeTaskCount[node] > 0:
        score = self.nodeTaskScoreSum[node] // self.nodeTaskCount[node]
    if score == 0:
        score = 1
    return score


@internal
def _finishNode(node: address):
    # Node.finishTask: QOS.finishTask, new selection score, back to the free set
    # (which may start a queued task at once). QoS kick-out is not simulated.
    self.nodeTaskScoreSum[node] += self.currentScore[node]
    self.nodeScore[node] = self._taskScore(node)
    state: uint8 = self.nodeState[node]
    if state == NODE_BUSY:
        self.nodeState[node] = NODE_FREE
        self._markAvailable(node)
    elif state == NODE_BUSY_QUITTING:
        self.nodeState[node] = NODE_NONE


@internal
def _randint() -> uint256:
    r: uint256 = convert(keccak256(concat(self.rngSeed, convert(self.rngNonce, bytes32))), uint256)
    self.rngNonce += 1
    return r


@internal
def _multinomial(weights: DynArray[uint256, MAX_NODES]) -> uint256:
    # Random.multinomial: value in [1, sum], first index whose prefix sum reaches it
    total: uint256 = 0
    for w: uint256 in weights:
        assert w > 0, "all multinomial weight should be greater than 0"
        total += w
    value: uint256 = 1 + self._randint() % total
    acc: uint256 = 0
    for i: uint256 in range(MAX_NODES):
        acc += weights[i]
        if acc >= value:
            return i
    raise "multinomial: no index"


@view
@internal
def _canSelect(vramLimit: uint256, sameGPU: bool) -> bool:
    # Would Node.randomSelectNodes(3, ...) find nodes ("No available node" otherwise)?
    if vramLimit > self.nodeVram:
        return False
    if not sameGPU:
        return self.freeCount >= 3
    for k: uint256 in range(MAX_KINDS):
        if k >= self.numKinds:
            break
        if len(self.groupNodes[k]) >= 3:
            return True
    return False


@internal
def _pickKind(countLimit: uint256) -> uint256:
    # Node.filterGPUID + multinomial over the models' summed scores
    kinds: DynArray[uint256, MAX_NODES] = []
    scores: DynArray[uint256, MAX_NODES] = []
    for k: uint256 in range(MAX_KINDS):
        if k >= self.numKinds:
            break
        if len(self.groupNodes[k]) >= countLimit:
            kinds.append(k)
            scores.append(self.groupScore[k])
    assert len(kinds) > 0, "No available node"
    return kinds[self._multinomial(scores)]


@internal
def _pickNode(k: uint256) -> address:
    # Node.filterNodesByGPUID + multinomial: reads every free node of the model
    # and its score, so the gas grows with the number of free nodes
    members: DynArray[address, MAX_NODES] = self.groupNodes[k]
    assert len(members) > 0, "No available node"
    scores: DynArray[uint256, MAX_NODES] = []
    for n: address in members:
        scores.append(self.nodeScore[n])
    node: address = members[self._multinomial(scores)]
    self._startTaskOnNode(node)
    return node


@internal
def _randomSelect(vramLimit: uint256, sameGPU: bool, seed: bytes32) -> DynArray[address, 3]:
    # Node.randomSelectNodes(3, vramLimit, sameGPU, seed) (checked by _canSelect)
    self.rngSeed = seed
    res: DynArray[address, 3] = []
    if sameGPU:
        k: uint256 = self._pickKind(3)
        for i: uint256 in range(3):
            res.append(self._pickNode(k))
    else:
        for i: uint256 in range(3):
            res.append(self._pickNode(self._pickKind(1)))
    return res


@internal
def _nodeAvailableCallback(root: address):
    # Task.nodeAvailableCallback(root) with Node.selectNodesWithRoot(root, 3):
    # the freed node plus two of its model if three are free, else two others.
    if staticcall self.taskQueue.size() == 0:
        return
    if self.freeCount < 3:
        return
    k: uint256 = self.nodeGpu[root]
    nodes: DynArray[address, 3] = [root]
    sameGPU: bool = True
    if len(self.groupNodes[k]) >= 3:
        for i: uint256 in range(MAX_NODES):
            if len(nodes) == 3:
                break
            n: address = self.groupNodes[k][i]
            if n != root:
                nodes.append(n)
    else:
        sameGPU = False
        for kk: uint256 in range(MAX_KINDS):
            if kk >= self.numKinds or len(nodes) == 3:
                break
            for i: uint256 in range(MAX_NODES):
                if i >= len(self.groupNodes[kk]) or len(nodes) == 3:
                    break
                n: address = self.groupNodes[kk][i]
                if n != root:
                    nodes.append(n)
    # popTask reverts "No available task" when nothing fits; like the real
    # callback we swallow that (raw_call with revert_on_failure=False)
    ok: bool = False
    response: Bytes[256] = b""
    ok, response = raw_call(
        self.taskQueue.address,
        abi_encode(sameGPU, self.nodeVram, method_id=method_id("popTask(bool,uint256)")),
        max_outsize=256,
        revert_on_failure=False,
    )
    if not ok:
        return
    task: TaskInQueue = abi_decode(response, TaskInQueue)
    for n: address in nodes:
        self._startTaskOnNode(n)
    self._start(task.id, task.taskType, task.creator, task.taskHash, task.dataHash, task.vramLimit, task.taskFee, nodes)


# ---------------------------------------------------------------- task internals

@internal
def _start(taskId: uint256, taskType: uint256, creator: address, taskHash: bytes32, dataHash: bytes32, vramLimit: uint256, taskFee: uint256, nodes: DynArray[address, 3]):
    t: TaskInfo = empty(TaskInfo)
    t.id = taskId
    t.taskType = taskType
    t.creator = creator
    t.taskHash = taskHash
    t.dataHash = dataHash
    t.vramLimit = vramLimit
    t.commitments = [empty(bytes32), empty(bytes32), empty(bytes32)]
    t.nonces = [empty(bytes32), empty(bytes32), empty(bytes32)]
    t.results = [b"", b"", b""]
    t.timeout = block.timestamp + self.timeout
    t.balance = taskFee
    t.totalBalance = taskFee
    t.selectedNodes = nodes
    self.tasks[taskId] = t
    for i: uint256 in range(3):
        self.nodeTasks[nodes[i]] = taskId
        log TaskStarted(taskId=taskId, taskType=taskType, creator=creator, selectedNode=nodes[i], taskHash=taskHash, dataHash=dataHash, round=i)


@internal
def _addScore(node: address, i: uint256):
    # QOS.addTaskScore: TASK_SCORE_REWARDS = [10, 9, 6]
    reward: uint256 = 10
    if i == 1:
        reward = 9
    elif i == 2:
        reward = 6
    self.currentScore[node] += reward


@internal
def _settle(taskId: uint256, round: uint256):
    # Task.settleNodeByRound: pay totalBalance * score / 50 (all that is left
    # when less than 3 wei would remain), free the node, TaskNodeSuccess
    node: address = self.tasks[taskId].selectedNodes[round]
    balance: uint256 = self.tasks[taskId].balance
    fee: uint256 = self.tasks[taskId].totalBalance * self.currentScore[node] // SCORE_LIMIT
    if balance - fee < 3:
        fee = balance
    self.tasks[taskId].balance = balance - fee
    send(node, fee)
    self.nodeTasks[node] = 0
    self._finishNode(node)
    log TaskNodeSuccess(taskId=taskId, nodeAddress=node, fee=fee)


@internal
def _tryDelete(taskId: uint256):
    # Task.tryDeleteTask: delete once no selected node is still on the task
    for n: address in self.tasks[taskId].selectedNodes:
        if self.nodeTasks[n] == taskId:
            return
    self.tasks[taskId] = empty(TaskInfo)


@internal
def _commitAndDisclose(taskId: uint256, round: uint256, commitment: bytes32, nonce: bytes32, result: Bytes[MAX_RESULT]):
    # submitTaskResultCommitment + discloseTaskResult (or reportTaskError when
    # commitment is the error value 1 and the result empty), with their scores
    node: address = self.tasks[taskId].selectedNodes[round]
    self._addScore(node, len(self.tasks[taskId].commitmentSubmitRounds))
    self.tasks[taskId].commitments[round] = commitment
    self.tasks[taskId].nonces[round] = nonce
    self.tasks[taskId].commitmentSubmitRounds.append(round)
    self._addScore(node, len(self.tasks[taskId].resultDisclosedRounds))
    self.tasks[taskId].results[round] = result
    self.tasks[taskId].resultDisclosedRounds.append(round)


@internal
def _cancelRunning(taskId: uint256):
    assert block.timestamp > self.tasks[taskId].timeout, "Task has not exceeded the deadline yet"
    t: TaskInfo = self.tasks[taskId]
    if t.balance > 0:
        self.tasks[taskId].balance = 0
        send(t.creator, t.balance)
    # QoS compensation of Task.cancelTask for nodes that were not at fault
    if len(t.commitmentSubmitRounds) == 0:
        for i: uint256 in range(3):
            self._addScore(t.selectedNodes[i], i)
            self._addScore(t.selectedNodes[i], i)
    elif len(t.commitmentSubmitRounds) < 3:
        for i: uint256 in range(3):
            if i >= len(t.commitmentSubmitRounds):
                break
            n: address = t.selectedNodes[t.commitmentSubmitRounds[i]]
            self._addScore(n, i)
            self._addScore(n, i)
    if not t.aborted:
        log TaskAborted(taskId=taskId, reason="Task Cancelled")
    for n: address in t.selectedNodes:
        if self.nodeTasks[n] == taskId:
            self.nodeTasks[n] = 0
            self._finishNode(n)
            log TaskNodeCancelled(taskId=taskId, nodeAddress=n)
    self.tasks[taskId] = empty(TaskInfo)


@internal
def _running(taskId: uint256):
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert not self.tasks[taskId].aborted, "Task is aborted"


# ------------------------------------------- simulated nodes (owner only)

@internal
def _register(n: address, gpu: uint256):
    if gpu + 1 > self.numKinds:
        self.numKinds = gpu + 1
    if self.nodeState[n] == NODE_NONE:
        # Node.join: score = QOS.getTaskScore (20 for a new node)
        self.nodeGpu[n] = gpu
        self.nodeScore[n] = self._taskScore(n)
        self.nodeState[n] = NODE_FREE
        self._markAvailable(n)
    elif self.nodeState[n] == NODE_BUSY_QUITTING:
        self.nodeGpu[n] = gpu
        self.nodeState[n] = NODE_BUSY
    elif self.nodeState[n] == NODE_BUSY:
        self.nodeGpu[n] = gpu  # takes effect when it is free again
    elif self.nodeGpu[n] != gpu:
        self._markUnavailable(n)
        self.nodeGpu[n] = gpu
        self._markAvailable(n)


@external
def devRegisterNodes(nodes: DynArray[address, MAX_BATCH], gpus: DynArray[uint256, MAX_BATCH]):
    # Join (or move to another GPU model) with gpus[i] = GPU model index < 16
    self._onlyOwner()
    for i: uint256 in range(MAX_BATCH):
        if i >= len(nodes):
            break
        assert gpus[i] < MAX_KINDS, "GPU model index too large"
        self._register(nodes[i], gpus[i])


@external
def devUnregisterNodes(nodes: DynArray[address, MAX_BATCH]):
    # A free node leaves at once; a busy one leaves when its task ends.
    self._onlyOwner()
    for n: address in nodes:
        if self.nodeState[n] == NODE_FREE:
            self._markUnavailable(n)
            self.nodeState[n] = NODE_NONE
        elif self.nodeState[n] == NODE_BUSY:
            self.nodeState[n] = NODE_BUSY_QUITTING


@external
def devSetNodeVram(vram: uint256):
    # All nodes' VRAM; then free nodes act as callback roots so that queued
    # tasks which now fit start.
    self._onlyOwner()
    self.nodeVram = vram
    roots: DynArray[address, MAX_START] = []
    for k: uint256 in range(MAX_KINDS):
        if k >= self.numKinds or len(roots) == MAX_START:
            break
        for i: uint256 in range(MAX_START):
            if i >= len(self.groupNodes[k]) or len(roots) == MAX_START:
                break
            roots.append(self.groupNodes[k][i])
    for n: address in roots:
        if self.nodeState[n] == NODE_FREE:
            self._nodeAvailableCallback(n)


@view
@external
def devFreeNodes() -> uint256:
    return self.freeCount


@view
@external
def devFreeNodesOfGpu(gpu: uint256) -> uint256:
    return len(self.groupNodes[gpu])


@view
@external
def devNodeGpu(node: address) -> uint256:
    return self.nodeGpu[node]


@external
def devReportSuccess(taskId: uint256, result: Bytes[MAX_RESULT], resultRound: uint256):
    # The three nodes commit and disclose the same result, first the result
    # node, then the two others (what Task.sol does across 6 transactions):
    # TaskResultCommitmentsReady; 2nd disclosure: the second node is paid
    # (18/50 of the fee) and TaskSuccess names the first; 3rd disclosure: the
    # third node is paid (12/50). The result node is paid on upload.
    self._onlyOwner()
    self._running(taskId)
    assert self.tasks[taskId].resultNode == empty(address), "Task already succeeded"
    assert resultRound < 3, "Round not exist"
    order: uint256[3] = [resultRound, (resultRound + 1) % 3, (resultRound + 2) % 3]
    for i: uint256 in range(3):
        nonce: bytes32 = keccak256(concat(convert(taskId, bytes32), convert(order[i], bytes32)))
        self._commitAndDisclose(taskId, order[i], keccak256(concat(result, nonce)), nonce, result)
    log TaskResultCommitmentsReady(taskId=taskId)
    self.tasks[taskId].isSuccess = True
    self._settle(taskId, order[1])
    node: address = self.tasks[taskId].selectedNodes[order[0]]
    self.tasks[taskId].resultNode = node
    self.numSuccessTasks += 1
    log TaskSuccess(taskId=taskId, result=result, resultNode=node)
    self._settle(taskId, order[2])
    self._tryDelete(taskId)


@external
def devReportResultsUploaded(taskId: uint256):
    # Task.reportResultsUploaded: the result node is paid (all that is left),
    # the task deleted, then TaskResultUploaded.
    self._onlyOwner()
    self._running(taskId)
    node: address = self.tasks[taskId].resultNode
    assert node != empty(address), "Not result round"
    round: uint256 = 0
    for i: uint256 in range(3):
        if self.tasks[taskId].selectedNodes[i] == node:
            round = i
    self._settle(taskId, round)
    self._tryDelete(taskId)
    log TaskResultUploaded(taskId=taskId)


@external
def devReportError(taskId: uint256, firstRound: uint256):
    # Two nodes call reportTaskError (rounds firstRound, firstRound + 1), as
    # Task.sol handles the second one (checkTaskResult -> emitTaskFinishedEvent):
    # both error results "match", the second reporter is paid 18/50 of the
    # fee, the first 20/50, TaskAborted("Task error reported"), aborted = true.
    # Nothing goes back to the creator; the third node is still on the task.
    self._onlyOwner()
    self._running(taskId)
    assert self.tasks[taskId].resultNode == empty(address), "Task already succeeded"
    assert len(self.tasks[taskId].commitmentSubmitRounds) == 0, "Already submitted"
    first: uint256 = firstRound % 3
    second: uint256 = (first + 1) % 3
    self._commitAndDisclose(taskId, first, ERROR_COMMITMENT, empty(bytes32), b"")
    self._commitAndDisclose(taskId, second, ERROR_COMMITMENT, empty(bytes32), b"")
    self.tasks[taskId].isSuccess = True  # two empty results compare equal
    self._settle(taskId, second)
    self._settle(taskId, first)
    self.numAbortedTasks += 1
    log TaskAborted(taskId=taskId, reason="Task error reported")
    self.tasks[taskId].aborted = True
    self._tryDelete(taskId)


@external
def devFinishAborted(taskId: uint256):
    # The third node of a "Task error reported" task reports its error too
    # (reportTaskError has no aborted check): it is paid what is left (12/50
    # of the fee plus rounding) and the task is deleted.
    self._onlyOwner()
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert self.tasks[taskId].aborted, "Task is not aborted"
    assert len(self.tasks[taskId].resultDisclosedRounds) == 2, "Not an error-reported task"
    rounds: DynArray[uint256, 3] = self.tasks[taskId].resultDisclosedRounds
    third: uint256 = 3 - rounds[0] - rounds[1]
    self._commitAndDisclose(taskId, third, ERROR_COMMITMENT, empty(bytes32), b"")
    self._settle(taskId, third)
    self._tryDelete(taskId)


@external
def devReportIllegal(taskId: uint256, firstRound: uint256):
    # Three different results (Task.checkTaskResult -> abortTask): after the
    # commitments (TaskResultCommitmentsReady) and disclosures, the whole
    # balance goes back to the creator, each node is freed with
    # TaskNodeCancelled, then TaskAborted("Task result illegal"), and the task
    # is deleted in the same transaction.
    self._onlyOwner()
    self._running(taskId)
    assert self.tasks[taskId].resultNode == empty(address), "Task already succeeded"
    assert len(self.tasks[taskId].commitmentSubmitRounds) == 0, "Already submitted"
    order: uint256[3] = [firstRound % 3, (firstRound + 1) % 3, (firstRound + 2) % 3]
    for i: uint256 in range(3):
        result: Bytes[MAX_RESULT] = concat(b"devnet illegal ", convert(convert(i, uint8), bytes1))
        nonce: bytes32 = keccak256(concat(convert(taskId, bytes32), convert(order[i], bytes32)))
        self._commitAndDisclose(taskId, order[i], keccak256(concat(result, nonce)), nonce, result)
    log TaskResultCommitmentsReady(taskId=taskId)
    t: TaskInfo = self.tasks[taskId]
    self.tasks[taskId].balance = 0
    send(t.creator, t.balance)
    for i: uint256 in range(3):
        n: address = t.selectedNodes[order[i]]
        self.nodeTasks[n] = 0
        self._finishNode(n)
        log TaskNodeCancelled(taskId=taskId, nodeAddress=n)
    self.numAbortedTasks += 1
    log TaskAborted(taskId=taskId, reason="Task result illegal")
    self.tasks[taskId].aborted = True
    self._tryDelete(taskId)


@external
def devNodeCancel(taskId: uint256):
    # A selected node's watchdog cancelling a task past its deadline.
    self._onlyOwner()
    assert self.tasks[taskId].id != 0, "Task not exist"
    self._cancelRunning(taskId)
